"""The AV-Digits benchmark's inputs and output folder: what a rerun may change.

``OUT/benchmark.json`` records the options of the first run; a rerun into the same folder must
repeat them (the seeds may change), the config file's contents and what the input recordings
and MNIST files hold, unless the earlier attempt stopped before it built anything (a prepared
folder, a run or an evaluation), so a mistyped input never locks its folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from avssl.atomic_write import write_text
from avssl.errors import AvsslError
from avssl.prep.report import MANIFEST

SETTINGS = "benchmark.json"  # the options of the first run; a rerun must repeat them
DATASETS = {  # prepared folder -> its prepare options beyond the shared ones (README)
    "avd16": ["--canvases-per-recording", "16", "--gallery-per-class", "90"],
    "avd3x3": ["--grid", "3", "--canvas-size", "84"],
}
MAX_SEED = 2**32 - 1
BENCHMARK_KEYS = {  # train.py keys the benchmark sets itself, per seed
    "train.seed": "the benchmark sets each run's seed: use --seeds",
    "data.root": "the benchmark trains on the folder it prepares under --out",
}
# input option -> what its digest covers (:func:`input_digests`): data changed under the same
# path would otherwise be served the results of the data it replaced
INPUTS = {
    "fsdd": "its recordings changed",
    "mnist_images": "its contents changed",
    "mnist_labels": "its contents changed",
    "test_mnist_images": "its contents changed",
    "test_mnist_labels": "its contents changed",
}
FLAGS = {  # option name -> flag, where they differ
    "overrides": "--set",
    "config_sha256": "--config (its contents changed)",
    **{f"{k}_sha256": f"--{k.replace('_', '-')} ({why})" for k, why in INPUTS.items()},
}
# option -> the value a folder recorded before the option existed had (long recordings were
# trimmed to their middle second before 2026-12-05)
BEFORE_OPTION = {"centre_trim": True}
# not recorded before 2026-12-06 (the config) or 2026-12-08 (the inputs): unknown there, not
# changed
UNRECORDED = {"config_sha256", *(f"{k}_sha256" for k in INPUTS)}


def check_inputs(args: argparse.Namespace) -> None:
    """Refuse missing input files and folders, and options that cannot work, before anything
    is written."""
    for seed in args.seeds:
        if seed > MAX_SEED:
            raise AvsslError(f"--seeds: {seed} is above {MAX_SEED} (train.seed's limit)")
    for item in args.overrides:
        key = item.partition("=")[0].strip()
        if key in BENCHMARK_KEYS:
            raise AvsslError(f"--set {item}: {BENCHMARK_KEYS[key]}")
    if (args.test_mnist_images is None) != (args.test_mnist_labels is None):
        raise AvsslError("--test-mnist-images and --test-mnist-labels go together")
    if args.fsdd.exists() and not args.fsdd.is_dir():  # the same words as prepare.py's
        raise AvsslError(f"{args.fsdd}: not a folder (--fsdd is the FSDD recordings folder)")
    if not args.fsdd.is_dir():
        raise AvsslError(f"{args.fsdd}: no such FSDD recordings folder")
    for path in (args.mnist_images, args.mnist_labels, args.test_mnist_images,
                 args.test_mnist_labels):  # fmt: skip
        if path is not None and path.is_dir():
            raise AvsslError(f"{path}: a folder, not an MNIST IDX file (name the file)")
        if path is not None and not path.is_file():
            raise AvsslError(f"{path}: no such MNIST file")


def check_settings(args: argparse.Namespace) -> None:
    """Record the options in ``OUT/benchmark.json``, or refuse a rerun that changes them (the
    seeds may change) and an ``--out`` folder that holds anything else."""
    settings = {k: str(Path(v).resolve()) if isinstance(v, Path) else v
                for k, v in vars(args).items() if k not in ("out", "seeds")}  # fmt: skip
    # the config by its contents too: an edit between two seeds would mix two configs
    settings["config_sha256"] = hashlib.sha256(Path(args.config).read_bytes()).hexdigest()
    settings.update(input_digests(args))
    path = args.out / SETTINGS
    if args.out.exists() and not args.out.is_dir():
        raise AvsslError(f"{args.out}: exists and is not a folder")
    if path.is_file():
        before = _read_settings(path)
        changed = [k for k in settings if before.get(k, BEFORE_OPTION.get(k)) != settings[k]
                   and not (k in UNRECORDED and k not in before)]  # fmt: skip
        if changed and _built(args.out):
            flags = ", ".join(FLAGS.get(k, "--" + k.replace("_", "-")) for k in changed)
            raise AvsslError(f"{path}: this folder was run with other {flags} (use a new --out)")
        if changed:  # an attempt that stopped before building anything binds nothing
            print(f"settings: {path} replaced (the earlier attempt built nothing)", file=sys.stderr)
            _write_settings(path, settings)
        elif any(k not in before for k in UNRECORDED):  # binds from now on
            _write_settings(path, {**before, **{k: settings[k] for k in UNRECORDED}})
        return
    if args.out.is_dir() and any(args.out.iterdir()):
        raise AvsslError(f"{args.out}: folder is not empty and holds no {SETTINGS} (new --out)")
    args.out.mkdir(parents=True, exist_ok=True)
    _write_settings(path, settings)


def input_digests(args: argparse.Namespace) -> dict[str, str | None]:
    """``{"fsdd_sha256": ..., "mnist_images_sha256": ...}``: a SHA-256 of what each input of
    :data:`INPUTS` holds (the ``.wav`` files of ``--fsdd`` by name and contents, each MNIST file's
    contents), None for an input not given; a file that cannot be read counts as such."""
    digests = {}
    for key in INPUTS:
        path = getattr(args, key, None)
        if path is None:
            digests[f"{key}_sha256"] = None
            continue
        path, total = Path(path), hashlib.sha256()
        files = [path]
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav")
        for file in files:
            total.update(file.name.encode("utf-8", "surrogateescape") + b"\0")
            try:
                total.update(hashlib.sha256(file.read_bytes()).digest())
            except OSError:  # a broken link, a folder named .wav: prepare lists it unreadable
                total.update(b"unreadable")
        digests[f"{key}_sha256"] = total.hexdigest()
    return digests


def _read_settings(path: Path) -> dict:
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise AvsslError(f"{path}: not readable as the benchmark's settings ({err}); use a "
                         "new --out") from None  # fmt: skip
    if not isinstance(before, dict):
        raise AvsslError(f"{path}: not the benchmark's settings (not a JSON object); use a "
                         "new --out")  # fmt: skip
    return before


def _write_settings(path: Path, settings: dict) -> None:
    """Write through a temporary file, so an interrupted run never leaves half of it."""
    write_text(path, json.dumps(settings, indent=1) + "\n")


def _built(out: Path) -> bool:
    """Whether ``out`` holds a finished prepared folder, any run folder or any evaluation."""
    done = any((out / "data" / n / MANIFEST).is_file() for n in DATASETS)
    return done or any((out / d).is_dir() and any((out / d).iterdir()) for d in ("runs", "eval"))
