"""Every command the READMEs show names flags and config keys that exist.

The READMEs are the user's manual: a flag renamed in the code but not in a README command
would fail the user who copies it. Each command in their ``bash`` blocks and each one quoted
inline (the command table's rows among them) that runs one of avssl's programs is checked
against that program's own ``--help``, in-process, and the config files it names are loaded
with its ``--set key=value`` overrides by the real config loader. Nothing is trained or
evaluated.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

from avssl.cli import main as avssl_main
from avssl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted((ROOT / "datasets").glob("*/README.md"))]
SCRIPT = re.compile(r"(?:^|/)(train|evaluate|prepare|benchmark)\.py$|^benchmarks/\w+\.py$")
# the default config of each program that reads one (None: the built-in defaults)
DEFAULT_CONFIG = {
    "train": None,
    "datasets/avdigits/benchmark.py": "configs/avdigits-contrastive.yaml",
    "benchmarks/avdigits_audio.py": "configs/avdigits-contrastive.yaml",
}


def _bash_commands(text: str) -> list[str]:
    """The simple commands of a README's ``bash`` blocks, variables expanded, comments dropped.

    A ``for V in A B; do ...; done`` loop gives its commands once for each value of ``V``.
    """
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        block = re.sub(r"\\\n\s*", " ", block)
        variables, loops = {}, []
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if assign := re.fullmatch(r'(\w+)="([^"]*)"', line):
                variables[assign[1]] = assign[2]
                continue
            for part in re.split(r";|&&|\|\||\||\bdo\b|\bthen\b", line):
                part = part.strip()
                if loop := re.fullmatch(r"for (\w+) in (.*)", part):
                    loops.append((loop[1], shlex.split(loop[2])))
                elif part == "done":
                    loops.pop()
                elif part:
                    expanded = [part]
                    for name, values in loops:
                        uses = re.compile(rf"\${{?{name}\b}}?")
                        if uses.search(part):
                            expanded = [uses.sub(v, c) for c in expanded for v in values]
                    for command in expanded:
                        command = re.sub(
                            r"\$\{?(\w+)\}?", lambda m, v=variables: v.get(m[1], "X"), command
                        )
                        commands.append(command.replace('"X"', "X"))
    return commands


def _inline_commands(text: str) -> list[str]:
    """Commands quoted inline (```python train.py --set ...```, the command table's rows).

    A syntax summary's alternatives and optional parts are all flags the program must know;
    a span with ``...`` leaves arguments out, and is skipped.
    """
    spans = re.findall(r"`((?:\.venv/bin/)?(?:python3? |avssl |torchrun )[^`]*)`", text)
    spans = [re.sub(r"\\\||[\[\]()]|\|", " ", span) for span in spans if "..." not in span]
    return [re.sub(r"\s+", " ", span) for span in spans]


def _subcommand(program: str, args: list[str]) -> tuple[str, list[str]] | None:
    """(``program SUB``, SUB's arguments), or None when SUB is a placeholder (``COMMAND``)."""
    if not args or not re.fullmatch(r"[a-z][a-z0-9]*", args[0]):
        return None
    return f"{program} {args[0]}", args[1:]


def _program(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(program key, its arguments) when ``tokens`` run an avssl program, else None."""
    for i, token in enumerate(tokens):
        rest = tokens[i + 1 :]
        if token == "-m" and rest[:1] == ["avssl"]:
            return _subcommand("avssl", rest[1:])
        if token.endswith("bin/avssl") or (token == "avssl" and i == 0):
            return _subcommand("avssl", rest)
        match = SCRIPT.search(token)
        if match is None:
            continue
        if match[1] == "train":
            return "avssl train", rest
        if match[1] == "evaluate":
            return _subcommand("avssl evaluate", rest)
        if match[1] == "prepare":  # datasets/NAME/prepare.py is avssl prepare NAME
            return _subcommand("avssl prepare", [Path(token).parent.name, *rest])
        return token, rest  # datasets/avdigits/benchmark.py, benchmarks/*.py
    return None


def _commands() -> list[tuple[str, str, list[str]]]:
    """(where, program key, arguments) of every avssl command in the READMEs."""
    found, seen = [], set()
    for readme in READMES:
        text = readme.read_text(encoding="utf-8")
        where = readme.relative_to(ROOT).as_posix()
        for kind, commands in (("bash", _bash_commands(text)), ("inline", _inline_commands(text))):
            for command in commands:
                try:
                    tokens = shlex.split(command)
                except ValueError:  # an unbalanced quote: still check the words
                    tokens = command.split()
                program = _program(tokens)
                if program and (program[0], tuple(program[1]), kind) not in seen:
                    seen.add((program[0], tuple(program[1]), kind))
                    found.append((f"{where} ({kind}): {command}", *program))
    return found


COMMANDS = _commands()
_HELP: dict[str, set[str]] = {}


def _options(program: str) -> set[str]:
    """The option strings ``program --help`` lists, read in-process."""
    if program not in _HELP:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                if program.startswith("avssl"):
                    code = avssl_main([*program.split()[1:], "--help"])
                else:
                    spec = importlib.util.spec_from_file_location("readme_program", ROOT / program)
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    code = module.main(["--help"])
            except SystemExit as exit_:
                code = exit_.code
        assert code in (0, None), f"{program} --help did not print its help (status {code})"
        _HELP[program] = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", out.getvalue()))
    return _HELP[program]


def test_the_readmes_show_commands():
    programs = {program for _, program, _ in COMMANDS}
    assert len(COMMANDS) > 100
    assert {"avssl train", "avssl evaluate avc", "avssl prepare avdigits"} <= programs


def test_flags_exist():
    problems = []
    for where, program, args in COMMANDS:
        known = _options(program)
        flags = [a.split("=")[0] for a in args if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", a)]
        if unknown := [flag for flag in flags if flag not in known]:
            problems.append(f"{where}: {program} has no {', '.join(unknown)}")
    assert not problems, "\n".join(problems)


def _config_files(args: list[str]) -> list[str]:
    """The files after ``--config`` (one, or several for a benchmark comparing configs)."""
    if "--config" not in args:
        return []
    files = []
    for arg in args[args.index("--config") + 1 :]:
        if arg.startswith("-"):
            break
        files.append(arg)
    return [f for f in files if f not in ("F", "FILE", "CONFIG")]  # a syntax summary's


def test_configs_and_set_overrides_exist():
    problems, checked = [], 0
    for where, program, args in COMMANDS:
        # a syntax summary's placeholder (--set key=value) is not an override
        overrides = [a for i, a in enumerate(args) if i and args[i - 1] == "--set"]
        overrides = [o for o in overrides if not re.match(r"(key|k|KEY)=", o)]
        configs = _config_files(args)
        if not overrides and not configs:
            continue
        if not configs:
            key = "train" if program == "avssl train" else program
            if key not in DEFAULT_CONFIG:
                problems.append(f"{where}: which config does {program} read?")
                continue
            configs = [DEFAULT_CONFIG[key]]
        # a shell variable stood for a value: give it one the key accepts
        overrides = [re.sub(r"=X$", "=0", o) for o in overrides]
        for config in configs:
            path = None if config in (None, "default") else ROOT / config  # the built-in one
            try:
                load_config(path, overrides)
            except Exception as err:  # noqa: BLE001 - every failure is reported with its command
                problems.append(f"{where}: {err}")
            checked += 1
    assert checked > 20
    assert not problems, "\n".join(problems)
