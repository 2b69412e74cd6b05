"""The stages of the AV-Digits benchmark (:mod:`avssl.tools.avdigits_benchmark`): prepare,
train and evaluate, each skipped when its output is there and still valid.

A stage's output is reused only while it describes what is there now: a seed's ``train.json``
only while its run folder holds a checkpoint, an evaluation's JSON only while its
``weights_digest`` is that of the checkpoint it would load now (``best.pt``, else ``last.pt``);
otherwise the stage runs again and says why on stderr. An evaluation to run reads the data
under ``--out`` only: a run trained on data elsewhere (an ``--out`` moved or copied) is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
from pathlib import Path

from avssl.atomic_write import write_text
from avssl.cli import json_line
from avssl.errors import AvsslError, Terminated
from avssl.prep.report import MANIFEST, REPORT
from avssl.tools.avdigits_folder import DATASETS
from avssl.tools.report_evals import read_json_object

TRAINED = "train.json"  # in OUT/eval/seedS: train's summary, written once it returned 0


def say(message: str) -> None:
    """One line on stderr: what the benchmark does or skips."""
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


def read_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or not one (a damaged file)."""
    return read_json_object(path)[0]


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
        if (folder / MANIFEST).is_file() and read_object(folder / REPORT) is not None:
            say(f"skip: {folder} is prepared ({MANIFEST})")
            continue
        if folder.is_dir() and any(folder.iterdir()):
            raise AvsslError(f"{folder}: a preparation that did not finish (remove the folder)")
        say(f"prepare: {folder}")
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
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if isinstance(record, dict) and record.get("split") == "train":
                planned = record.get("planned_steps", planned)
    return state["step"] >= planned


# keys a run folder found in OUT/runs may differ in from the benchmark's own: what names or
# feeds the run without changing its weights (data.root: the data's path, checked where an
# evaluation reads it, check_own_data)
UNCOMPARED = ("name", "train.runs_dir", "train.log_every", "data.num_workers", "data.prefetch",
              "data.root")  # fmt: skip


def check_run_settings(args: argparse.Namespace, run_dir: Path, seed: int) -> None:
    """Refuse a run folder trained with other settings than the benchmark's config, its
    ``--set`` overrides and ``train.seed`` ``seed`` give (finished by hand with
    ``train.py --resume RUN --set ...``): its results would be credited to the config.

    Raises:
        AvsslError: naming the first differing key, its value and the benchmark's.
    """
    from avssl.config import config_from_dict, dotted_values, load_config
    from avssl.train.checkpoint import load_checkpoint

    want = load_config(args.config, ["data.root=.", f"train.seed={seed}", *args.overrides])
    found = config_from_dict(load_checkpoint(run_dir / "last.pt")["config"])
    want, found = dotted_values(want), dotted_values(found)
    # loss.domains []: the run fills in its training rows' (the speakers) and saves them; the
    # data they come from is checked where an evaluation reads it, as data.root
    filled = ("loss.domains",) if not want["loss.domains"] else ()
    differ = [k for k in want if k not in UNCOMPARED + filled and want[k] != found.get(k)]
    if differ:
        k, more = differ[0], f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        raise AvsslError(
            f"{run_dir}: trained with {k}={found.get(k)}, not the benchmark's {want[k]}{more} "
            "(finished with other settings?): remove it and run again"
        )


def train(args: argparse.Namespace, seed: int) -> None:
    """Train seed ``seed`` into ``OUT/runs/seedS`` unless a finished run is there.

    Raises:
        AvsslError: the folder holds an unfinished run, or training stopped early.
    """
    from avssl.train.checkpoint import load_checkpoint
    from avssl.train.cli import main as train_main

    run_dir, done = args.out / "runs" / f"seed{seed}", args.out / "eval" / f"seed{seed}" / TRAINED
    if read_object(done) is not None and (run_dir / "last.pt").is_file():
        say(f"skip: {run_dir} is trained ({done})")
        return
    if done.exists():  # damaged, or its run is gone: what it said no longer holds
        say(f"redo: {run_dir} ({done} is damaged or the run has no last.pt)")
        done.unlink()
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not (run_dir / "last.pt").is_file():
            hint = "it holds no checkpoint: remove it and run again"
        else:
            hint = f"remove it, or finish it with `python train.py --resume {run_dir}`"
        if (run_dir / "last.pt").is_file():  # first: a run of other settings is no use
            check_run_settings(args, run_dir, seed)
        if not run_finished(run_dir):
            raise AvsslError(f"{run_dir}: a training run that did not finish ({hint})")
        say(f"skip: {run_dir} is trained (its last.pt reached the last step)")
        step = load_checkpoint(run_dir / "last.pt")["step"]
        summary = {"run_dir": str(run_dir), "finished": "found in the run folder", "step": step}
    else:
        data = args.out.resolve() / "data" / "avd16"  # the checkpoint keeps it: any cwd
        argv = ["--config", str(args.config), "--set", f"data.root={data}"]
        argv += ["--set", f"train.seed={seed}"]
        argv += [x for item in args.overrides for x in ("--set", item)]
        say(f"train: {run_dir}")
        code, last = _call(train_main, [*argv, "--run-dir", str(run_dir), "--no-progress"])
        if code:
            hint = f"remove it, or finish it with `python train.py --resume {run_dir}`"
            raise AvsslError(f"{run_dir}: training stopped (exit status {code}; {hint})")
        summary = json.loads(last)
    write_text(done, json_line(summary) + "\n", make_parents=True)
    if summary.get("stop_signal"):  # came during the last step: the run is whole, then stop
        say(f"{run_dir}: finished its last step as the stop came")
        raise Terminated() if summary["stop_signal"] == signal.SIGTERM else KeyboardInterrupt()


def run_digest(run_dir: Path) -> tuple[str, str | None]:
    """The ``weights_digest`` of the checkpoint an evaluation of ``run_dir`` loads now, and the
    data its config trains on (``data.root``)."""
    from avssl.train.checkpoint import load_model, weights_digest

    model, cfg, _ = load_model(run_dir)
    return weights_digest(model), cfg.data.root


def check_own_data(args: argparse.Namespace, run_dir: Path, root: str | None) -> None:
    """Refuse to evaluate a run trained on data outside ``--out`` (a folder moved or copied
    after training): its evaluations would read that data, or fail where it is gone."""
    mine = (args.out / "data" / "avd16").resolve()
    if root is None or Path(root).expanduser().resolve() != mine:
        raise AvsslError(
            f"{run_dir}: trained on {root}, not on {mine} (an --out moved or copied after "
            "training?): evaluate it where the folder was made, or use a new --out"
        )


def evaluate(
    name: str,
    argv: list[str],
    path: Path,
    digest: str | None = None,
    before=None,
    needs: str | None = None,
) -> dict:
    """Run ``evaluate.py ARGV --out PATH`` unless ``path`` holds its result; its JSON.

    Args:
        name: shown on stderr.
        argv: evaluate.py arguments.
        path: the result's file.
        digest: the weights the result must have been evaluated on (:func:`run_digest`); a
            result of other weights, or a damaged file, is evaluated again. None: any.
        before: called (no arguments) before an evaluation runs, e.g. to refuse foreign data.
        needs: a key the result must hold, else it was made by an earlier rule and is
            evaluated again (``pointing_ties``: localisation scores ties at the maximum by
            their share; ``frontend``: the log-mel probe follows the checkpoint's front end).
    """
    from avssl.eval.cli import main as eval_main

    old = read_object(path)
    if old is not None and digest is not None and old.get("weights_digest") != digest:
        say(f"redo: {name} ({path} evaluated weights {old.get('weights_digest')}, now {digest})")
        old = None
    elif old is None and path.exists():
        say(f"redo: {name} ({path} is damaged)")
    elif old is not None and needs is not None and needs not in old:
        say(f"redo: {name} ({path} was made by an earlier version: no {needs!r})")
        old = None
    if old is not None:
        say(f"skip: {name} ({path} exists)")
        return old
    if before is not None:
        before()
    say(f"evaluate: {name} -> {path}")
    part = path.with_name(path.name + ".part")  # renamed once complete
    code, _ = _call(eval_main, [*argv, "--out", str(part), "--force"])
    if code:  # its own error line is above
        part.unlink(missing_ok=True)
        raise AvsslError(f"{path}: evaluate.py {argv[0]} stopped (exit status {code}; see above)")
    os.replace(part, path)
    return json.loads(path.read_text(encoding="utf-8"))
