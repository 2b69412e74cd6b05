"""The AV-Digits benchmark of issue #5 in one command: prepare, train each seed, evaluate, judge.

Runs, in-process, the protocol of README.md's "AV-Digits: real speech and real handwriting"
(Results, README.md#av-digits-real-speech-and-real-handwriting; the commands of its reproduce
block and ``ev()``): ``prepare`` writes the 2x2 set
(``OUT/data/avd16``, 16 canvases per training recording, 90 gallery images per digit) and the
3x3 set (``OUT/data/avd3x3``); ``train`` runs the config once per seed into ``OUT/runs/seedS``;
``evaluate`` runs avc (raw and ``--cohort 512``), gallery retrieval, localisation on 2x2 and 3x3
and the linear probe on each seed, and the log-mel and untrained-network probes once, into
``OUT/eval``. ``OUT/results.json`` and ``OUT/results.md`` then hold every value, mean +- sample
sd over seeds, the baselines and the issue's targets (:mod:`avssl.tools.avdigits_results`).

Running it again continues: a stage whose output exists is skipped (said on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

from avssl.atomic_write import write_text
from avssl.cli import ArgumentParser, fraction, int_at_least, json_line, json_safe
from avssl.errors import AvsslError
from avssl.prep.avdigits import add_source_args
from avssl.prep.report import MANIFEST, REPORT
from avssl.tools.avdigits_folder import DATASETS, check_inputs, check_settings
from avssl.tools.avdigits_results import EVALUATIONS, aggregate, markdown

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "avdigits-contrastive.yaml"
TRAINED = "train.json"  # in OUT/eval/seedS: train's summary, written once it returned 0


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="datasets/avdigits/benchmark.py", description=__doc__.split("\n")[0])
    add_source_args(p)  # --fsdd, --mnist-*, --test-*, --centre-trim: as prepare.py's
    p.add_argument(
        "--data-seed", type=int_at_least(0), default=0, help="prepare.py --seed (image splits)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder of everything it writes")
    p.add_argument("--config", type=Path, default=CONFIG, help="training config")
    p.add_argument(
        "--seeds", type=int_at_least(0), nargs="+", default=[0, 1, 2], help="train.seed values"
    )
    p.add_argument(
        "--audio-tta", type=fraction, default=0.2, metavar="R",
        help="evaluate.py --audio-tta R (speed test-time augmentation; 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="train.py --set, after data.root and train.seed (repeatable)",
    )  # fmt: skip
    return p


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Tee(io.TextIOBase):
    """Writes to ``stream`` and keeps a copy (a called command's JSON line)."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _call(fn, argv: list[str]) -> tuple[int, str]:
    """``fn(argv)`` with its stdout sent to stderr; its exit status and last stdout line."""
    tee = _Tee(sys.stderr)
    with contextlib.redirect_stdout(tee):
        code = int(fn(argv) or 0)
    lines = tee.copy.getvalue().strip().splitlines()
    return code, lines[-1] if lines else ""


def prepare(args: argparse.Namespace) -> None:
    """Write the 2x2 and 3x3 folders under ``OUT/data`` (each skipped once it is complete)."""
    from avssl.prep.avdigits import main as prepare_main

    shared = ["--fsdd", str(args.fsdd), "--mnist-images", str(args.mnist_images)]
    shared += ["--mnist-labels", str(args.mnist_labels)]
    shared += ["--test-speakers", args.test_speakers] if args.test_speakers is not None else []
    shared += ["--seed", str(args.data_seed)] + (["--centre-trim"] if args.centre_trim else [])
    if args.test_mnist_images is not None:
        shared += ["--test-mnist-images", str(args.test_mnist_images)]
        shared += ["--test-mnist-labels", str(args.test_mnist_labels)]
    for name, extra in DATASETS.items():
        folder = args.out / "data" / name
        if (folder / MANIFEST).is_file() and (folder / REPORT).is_file():
            _say(f"skip: {folder} is prepared ({MANIFEST})")
            continue
        if folder.is_dir() and any(folder.iterdir()):
            raise AvsslError(f"{folder}: a preparation that did not finish (remove the folder)")
        _say(f"prepare: {folder}")
        code, _ = _call(prepare_main, [*shared, *extra, "--out", str(folder)])
        if code:  # its own error line is above; a half-written folder is refused next time
            raise AvsslError(f"{folder}: prepare.py stopped (exit status {code}; see above)")


def run_finished(run_dir: Path) -> bool:
    """Whether ``run_dir``'s ``last.pt`` reached the run's last step: ``train.steps`` of its
    config, or the plan ``train.max_minutes`` made (``planned_steps`` of ``metrics.jsonl``)."""
    from avssl.train.checkpoint import load_checkpoint

    if not (run_dir / "last.pt").is_file():
        return False
    state = load_checkpoint(run_dir / "last.pt")
    planned = state["config"]["train"]["steps"]
    with contextlib.suppress(OSError):
        for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("split") == "train" and "planned_steps" in record:
                planned = record["planned_steps"]
    return state["step"] >= planned


def train(args: argparse.Namespace, seed: int) -> None:
    """Train seed ``seed`` into ``OUT/runs/seedS`` unless a finished run is there.

    Raises:
        AvsslError: the folder holds an unfinished run, or training stopped early.
    """
    from avssl.train.cli import main as train_main

    run_dir, done = args.out / "runs" / f"seed{seed}", args.out / "eval" / f"seed{seed}" / TRAINED
    resume = f"remove it, or finish it with `python train.py --resume {run_dir}`, and run again"
    if done.is_file():
        _say(f"skip: {run_dir} is trained ({done})")
        return
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not run_finished(run_dir):
            raise AvsslError(f"{run_dir}: a training run that did not finish ({resume})")
        _say(f"skip: {run_dir} is trained (its last.pt reached the last step)")
        summary = {"run_dir": str(run_dir), "finished": "found in the run folder"}
    else:
        data = args.out.resolve() / "data" / "avd16"  # the checkpoint keeps it: any cwd
        argv = ["--config", str(args.config), "--set", f"data.root={data}"]
        argv += ["--set", f"train.seed={seed}"]
        argv += [x for item in args.overrides for x in ("--set", item)]
        _say(f"train: {run_dir}")
        code, last = _call(train_main, [*argv, "--run-dir", str(run_dir), "--no-progress"])
        if code:
            raise AvsslError(f"{run_dir}: training stopped (exit status {code}; {resume})")
        summary = json.loads(last)
    write_text(done, json_line(summary) + "\n", make_parents=True)


def evaluations(args: argparse.Namespace, seed: int) -> dict[str, list[str]]:
    """The README's ``ev()`` for one seed: evaluation name -> evaluate.py arguments."""
    data = args.out / "data"
    tta = ["--audio-tta", f"{args.audio_tta:g}"] if args.audio_tta else []
    argvs = {
        "avc": ["avc"],
        "avc_cohort": ["avc", "--cohort", "512"],
        "retrieval": ["retrieval", "--gallery", str(data / "avd16" / "gallery.jsonl")],
        "localize_2x2": ["localize"],
        "localize_3x3": ["localize", "--data", str(data / "avd3x3" / MANIFEST)],
    }
    argvs["localize_3x3"] += ["--frame-size", "84"]
    argvs = {name: [*argv, *_common(args, seed)] for name, argv in argvs.items()}
    argvs["classify"] = probe(args, seed, "model")
    assert argvs.keys() == EVALUATIONS.keys()
    return {name: [*argv, *tta] for name, argv in argvs.items()}


def probe(args: argparse.Namespace, seed: int, features: str) -> list[str]:
    """evaluate.py arguments of the linear probe on the 3x3 manifest (without --audio-tta)."""
    root = str(args.out / "data" / "avd3x3" / MANIFEST)
    argv = ["classify", "--dataset", "manifest", "--root", root, "--features", features]
    return [*argv, *_common(args, seed)]


def _common(args: argparse.Namespace, seed: int) -> list[str]:
    return ["--checkpoint", str(args.out / "runs" / f"seed{seed}"), "--no-progress"]


def evaluate(name: str, argv: list[str], path: Path) -> dict:
    """Run ``evaluate.py ARGV --out PATH`` unless ``path`` exists; its JSON."""
    from avssl.eval.cli import main as eval_main

    if path.is_file():
        _say(f"skip: {name} ({path} exists)")
    else:
        _say(f"evaluate: {name} -> {path}")
        part = path.with_name(path.name + ".part")  # renamed once complete
        code, _ = _call(eval_main, [*argv, "--out", str(part), "--force"])
        if code:  # its own error line is above
            part.unlink(missing_ok=True)
            raise AvsslError(
                f"{path}: evaluate.py {argv[0]} stopped (exit status {code}; see above)"
            )
        os.replace(part, path)
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """``datasets/avdigits/benchmark.py``: the whole protocol; the last stdout line is JSON."""
    args = _parser().parse_args(argv)
    args.seeds = list(dict.fromkeys(args.seeds))
    from avssl.config import load_config
    from avssl.train.cli import check_model_config

    # a bad --set (a mistyped method too) fails now, not after the data are prepared
    check_model_config(load_config(args.config, ["data.root=.", *args.overrides]))
    check_inputs(args)
    check_settings(args)
    prepare(args)
    for seed in args.seeds:
        train(args, seed)
    per_seed = {}
    for seed in args.seeds:
        folder = args.out / "eval" / f"seed{seed}"
        per_seed[seed] = {name: evaluate(f"seed {seed} {name}", argv, folder / f"{name}.json")
                          for name, argv in evaluations(args, seed).items()}  # fmt: skip
    base = dict(per_seed[args.seeds[0]])  # its localisation JSONs hold the centre prior
    # random: the first seed's config, untrained; logmel: the first seed's front end (8 kHz)
    for features in ("logmel", "random"):
        path = args.out / "eval" / "baselines" / f"classify_{features}.json"
        argv = probe(args, args.seeds[0], features)
        base[f"classify_{features}"] = evaluate(f"baseline {features}", argv, path)
    return write_results(args, per_seed, base)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (the config)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_results(args: argparse.Namespace, per_seed: dict, base: dict) -> int:
    """Write ``OUT/results.json`` and ``OUT/results.md``; print the JSON summary line."""
    report = json.loads((args.out / "data" / "avd16" / REPORT).read_text(encoding="utf-8"))
    results = {
        "protocol": "README.md, AV-Digits (issue #5); datasets/avdigits/benchmark.py",
        "seeds": args.seeds,
        "audio_tta": args.audio_tta,
        "config": _shown(args.config),
        "overrides": args.overrides,
        "test_voices": ", ".join(report.get("speakers", {}).get("test", [])),
        **aggregate(per_seed, base),
        "training": {
            str(s): json.loads((args.out / "eval" / f"seed{s}" / TRAINED).read_text("utf-8"))
            for s in args.seeds
        },
    }
    text = json.dumps(json_safe(results), indent=1, allow_nan=False)
    write_text(args.out / "results.json", text + "\n")
    write_text(args.out / "results.md", markdown(results))
    _say(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    met = {name: t["met"] for name, t in results["targets"].items()}
    print(json_line({"results": str(args.out / "results.json"), "targets_met": met}), flush=True)
    return 0
