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

Running it again continues: a stage whose output exists and still holds is skipped (said on
stderr; :mod:`avssl.tools.avdigits_stages`).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from avssl.atomic_write import write_text
from avssl.cli import ArgumentParser, fraction, int_at_least, json_line, json_safe
from avssl.cli_checkpoint import note_checkpoint
from avssl.errors import AvsslError
from avssl.prep.avdigits_args import add_source_args
from avssl.prep.report import MANIFEST, REPORT
from avssl.tools.avdigits_folder import check_inputs, check_settings
from avssl.tools.avdigits_results import EVALUATIONS, aggregate, markdown
from avssl.tools.avdigits_stages import (
    TRAINED,
    check_own_data,
    evaluate,
    prepare,
    read_object,
    run_digest,
    say,
    train,
)

# evaluation -> a key its JSON must hold, else it was made by an earlier rule (redone)
NEEDS = {"localize_2x2": "pointing_ties", "localize_3x3": "pointing_ties",
         "classify_logmel": "frontend"}  # fmt: skip
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "avdigits-contrastive.yaml"


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


def main(argv: list[str] | None = None) -> int:
    """``datasets/avdigits/benchmark.py``: the whole protocol; the last stdout line is JSON."""
    args = _parser().parse_args(argv)
    args.seeds = list(dict.fromkeys(args.seeds))
    from avssl.sigterm import terminated_as_interrupt

    with terminated_as_interrupt():  # a SIGTERM (timeout, a scheduler) cleans up as Ctrl-C does
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Every stage of :func:`main`, in order."""
    from avssl.config import load_config
    from avssl.config_naming import naming_config_file
    from avssl.train.cli import check_model_config

    # a bad --set (a mistyped method too) fails now, not after the data are prepared
    overrides = ["data.root=.", *args.overrides]
    with naming_config_file(args.config, overrides):
        cfg = load_config(args.config, overrides)
        model = check_model_config(cfg)
    if not model.has_map:  # else every seed trains, then the first localisation stops the run
        raise AvsslError(
            f"{args.config}: method {cfg.model.method!r} has no localisation map, which the "
            "benchmark's pointing and cIoU need (avolnet, or contrastive with model.spatial=true)"
        )
    check_inputs(args)
    check_settings(args)
    prepare(args)
    for seed in args.seeds:
        train(args, seed)
    per_seed, first_root = {}, None
    for seed in args.seeds:
        folder = args.out / "eval" / f"seed{seed}"
        run_dir = args.out / "runs" / f"seed{seed}"
        note_checkpoint(run_dir)
        digest, root = run_digest(run_dir)
        guard = functools.partial(check_own_data, args, run_dir, root)
        per_seed[seed] = {
            name: evaluate(
                f"seed {seed} {name}", argv, folder / f"{name}.json", digest, guard, NEEDS.get(name)
            )  # fmt: skip
            for name, argv in evaluations(args, seed).items()
        }
        first_root = root if seed == args.seeds[0] else first_root
    base = dict(per_seed[args.seeds[0]])  # its localisation JSONs hold the centre prior
    # random: the first seed's config, untrained; logmel: the first seed's front end
    first = args.out / "runs" / f"seed{args.seeds[0]}"
    guard = functools.partial(check_own_data, args, first, first_root)
    for features in ("logmel", "random"):
        path = args.out / "eval" / "baselines" / f"classify_{features}.json"
        argv = probe(args, args.seeds[0], features)
        name = f"classify_{features}"
        base[name] = evaluate(f"baseline {features}", argv, path, None, guard, NEEDS.get(name))
    return write_results(args, per_seed, base)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (the config)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _skipped_items(per_seed: dict, base: dict) -> dict[str, int]:
    """``{"seed0/avc": n, "baselines/classify_logmel": n, ...}``: the evaluations that skipped
    items (unreadable or missing media), which their numbers leave out."""
    found = {f"seed{s}/{name}": r.get("n_skipped") for s, evals in per_seed.items()
             for name, r in evals.items()}  # fmt: skip
    for s, evals in per_seed.items():  # gallery images retrieval could not read
        found[f"seed{s}/retrieval gallery"] = (
            evals["retrieval"].get("a2v_gallery", {}).get("n_skipped")
        )
    found.update(
        {f"baselines/{n}": base[n].get("n_skipped") for n in base if n.startswith("classify_")}
    )
    return {where: n for where, n in found.items() if n}


def write_results(args: argparse.Namespace, per_seed: dict, base: dict) -> int:
    """Write ``OUT/results.json`` and ``OUT/results.md``; print the JSON summary line."""
    report = read_object(args.out / "data" / "avd16" / REPORT)
    if report is None:
        raise AvsslError(f"{args.out / 'data' / 'avd16' / REPORT}: missing or damaged")
    results = {
        "protocol": "README.md, AV-Digits (issue #5); datasets/avdigits/benchmark.py",
        "seeds": args.seeds,
        "audio_tta": args.audio_tta,
        "config": _shown(args.config),
        "overrides": args.overrides,
        "centre_trim": args.centre_trim,
        "data_seed": args.data_seed,
        "test_voices": ", ".join(report.get("speakers", {}).get("test", [])),
        **aggregate(per_seed, base),
        "skipped_items": _skipped_items(per_seed, base),
        "training": {
            str(s): read_object(args.out / "eval" / f"seed{s}" / TRAINED) for s in args.seeds
        },
    }
    text = json.dumps(json_safe(results), indent=1, allow_nan=False)
    write_text(args.out / "results.json", text + "\n")
    write_text(args.out / "results.md", markdown(results))
    say(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    met = {name: t["met"] for name, t in results["targets"].items()}
    print(json_line({"results": str(args.out / "results.json"), "targets_met": met}), flush=True)
    return 0
