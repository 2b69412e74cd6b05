"""``python evaluate.py SUBCOMMAND`` / ``avssl evaluate SUBCOMMAND``: one explicit registry.

Every subcommand takes ``--checkpoint``, prints one JSON object as its last stdout line, writes
it to ``--out FILE`` when given, and appends a markdown table to ``report.md`` when the
checkpoint lives in a run directory. Nothing here writes back into training choices: the
evaluated checkpoint and its stored decision threshold are read-only inputs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from avssl.cli import json_line
from avssl.errors import AvsslError

# name -> ("module:function", help). Each function is ``run(argv) -> int``; modules are imported
# only when their subcommand runs.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "avc": ("avssl.eval.cli:run_avc", "correspondence accuracy (easy and hard negatives)"),
    "classify": ("avssl.eval.classify_cli:run", "linear probe on frozen audio embeddings"),
    "retrieval": ("avssl.eval.retrieval_cli:run", "cross-modal and instance retrieval"),
    "localize": ("avssl.eval.localize_cli:run", "sound-source localisation (cIoU, AUC, pointing)"),
    "sync": ("avssl.eval.sync_cli:run", "audio-visual offset estimation (SyncNet-style)"),
}


MAX_LISTED_SKIPS = 50


def add_common(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    p.add_argument("--checkpoint", required=checkpoint_required, help="checkpoint or run directory")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--no-progress", action="store_true")


def add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true", help="an unreadable clip is an error")


def skip_report(store, strict: bool = False) -> dict:
    """``{"skipped": n, "skipped_items": [{"id", "reason"}, ...]}`` of a clip store's bad rows.

    Raises:
        AvsslError: under ``strict``, naming the first bad row.
    """
    if strict and store.skipped:
        item, reason = store.skipped[0]
        raise AvsslError(f"{reason} (row {item!r}; --strict)")
    items = [{"id": i, "reason": r} for i, r in store.skipped[:MAX_LISTED_SKIPS]]
    return {"skipped": len(store.skipped), "skipped_items": items}


def use_data(cfg, manifest: str | None) -> None:
    """Point a checkpoint's config at ``--data MANIFEST`` when given.

    The checkpoint's shard cache (``data.cache``) holds its training data only, so another
    manifest is read from its media.
    """
    if manifest:
        cfg.data.root = manifest
        cfg.data.cache = None


def emit(result: dict, args, title: str) -> None:
    """Print the result as the last stdout line, write ``--out``, append to the run's report."""
    text = json_line(result)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    ckpt = Path(args.checkpoint) if getattr(args, "checkpoint", None) else None
    run_dir = ckpt if ckpt and ckpt.is_dir() else (ckpt.parent if ckpt else None)
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        append_report(run_dir / "report.md", title, result)
    print(text)
    sys.stdout.flush()


def _flatten(result: dict, prefix: str = "") -> dict:
    """Nested dicts become ``outer/inner`` keys (e.g. ``a2v/R@1``); lists are left out."""
    flat = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif not isinstance(value, list):
            flat[prefix + key] = value
    return flat


def append_report(path: Path, title: str, result: dict) -> None:
    """Append a two-column markdown table of the scalar entries of ``result``."""
    lines = [f"\n## {title}\n", "| metric | value |", "|---|---|"]
    for key, value in _flatten(result).items():
        if isinstance(value, float):
            lines.append(f"| {key} | {value:.4f} |")
        elif isinstance(value, int | str):
            lines.append(f"| {key} | {value} |")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def run_avc(argv: list[str]) -> int:
    """``evaluate.py avc --checkpoint CKPT [--data MANIFEST] [--split test]``."""
    p = argparse.ArgumentParser(prog="evaluate.py avc", description=SUBCOMMANDS["avc"][1])
    add_common(p)
    p.add_argument("--data", help="manifest (default: the data the checkpoint was trained on)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--windows", type=int, default=4, help="windows per clip")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    add_strict(p)
    args = p.parse_args(argv)

    from avssl.data.source import load_split
    from avssl.eval.avc import avc_metrics, score_pairs
    from avssl.train.checkpoint import load_model
    from avssl.train.runtime import resolve_device

    device = resolve_device(args.device)
    model, cfg, state = load_model(args.checkpoint, device)
    use_data(cfg, args.data)
    ds = load_split(
        cfg.data, args.split, train=False, windows_per_clip=args.windows,
        seed=cfg.train.seed + 2000, progress=not args.no_progress,
    )  # fmt: skip
    skips = skip_report(ds.store, args.strict)
    scores = score_pairs(model, ds, device, args.precision, cfg.train.batch_size)
    result = avc_metrics(scores, float(model.decision_threshold))
    result.update(split=args.split, checkpoint=state["path"], **skips)
    emit(result, args, f"AVC accuracy ({args.split})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``evaluate.py SUBCOMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: evaluate.py SUBCOMMAND [ARGS...]\n\nsubcommands:")
        for name, (_, help_) in SUBCOMMANDS.items():
            print(f"  {name:<10} {help_}")
        return 0 if argv else 2
    if argv[0] not in SUBCOMMANDS:
        raise AvsslError(f"unknown evaluation {argv[0]!r} (choose from {', '.join(SUBCOMMANDS)})")
    module, func = SUBCOMMANDS[argv[0]][0].split(":")
    return getattr(importlib.import_module(module), func)(argv[1:])
