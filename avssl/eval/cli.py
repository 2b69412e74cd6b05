"""``python evaluate.py SUBCOMMAND`` / ``avssl evaluate SUBCOMMAND``: one explicit registry.

Every subcommand takes ``--checkpoint``, prints one JSON object as its last stdout line, writes
it to ``--out FILE`` when given (an existing file only with ``--force``), and appends a markdown
table to ``report.md`` when the checkpoint lives in a run directory. Nothing here writes back
into training choices: the evaluated checkpoint and its stored decision threshold are read-only
inputs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from avssl.cli import json_line
from avssl.cli_checkpoint import note_checkpoint
from avssl.cli_outputs import (
    check_new_dir,
    check_new_file,
    check_not_empty,
    check_not_input,
    check_not_read,
)
from avssl.data.media_checks import IMAGE_EXTS
from avssl.errors import AvsslError, skip_fields
from avssl.eval.audio_sets import MEDIA_EXTS
from avssl.eval.provenance import qualified_title, utc_now
from avssl.eval.report_md import append_report

# name -> ("module:function", help). Each function is ``run(argv) -> int``; modules are imported
# only when their subcommand runs.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "avc": ("avssl.eval.avc_cli:run", "correspondence accuracy (easy and hard negatives)"),
    "classify": ("avssl.eval.classify_cli:run", "linear probe on frozen audio embeddings"),
    "retrieval": ("avssl.eval.retrieval_cli:run", "cross-modal and instance retrieval"),
    "localize": ("avssl.eval.localize_cli:run", "sound-source localisation (cIoU, AUC, pointing)"),
    "sync": ("avssl.eval.sync_cli:run", "audio-visual offset estimation (SyncNet-style)"),
}


def add_common(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    """Add the options of every subcommand: ``--checkpoint``, ``--out``, ``--force``,
    ``--device`` and ``--no-progress``.

    Args:
        p: the subcommand's parser.
        checkpoint_required: False makes ``--checkpoint`` optional (``classify``, whose
            baseline features need no checkpoint).
    """
    p.add_argument("--checkpoint", required=checkpoint_required, help="checkpoint or run directory")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--no-progress", action="store_true")


def check_outputs(args) -> None:
    """Refuse, before any work, an ``--out`` file or ``--out-dir`` that ``--force`` must allow.

    Raises:
        AvsslError: see :mod:`avssl.cli_outputs`: ``check_new_file``, ``check_not_input``
            (``--out`` must not replace an input) and ``check_new_dir``.
    """
    check_not_empty((f"--{name.replace('_', '-')}", value) for name, value in vars(args).items())
    if args.out and Path(args.out).suffix.lower() in (*MEDIA_EXTS, *IMAGE_EXTS):
        # a manifest's media are inputs no argument names: a JSON written over one is lost data
        raise AvsslError(f"{args.out}: --out names a media file; the result is JSON (.json)")
    if args.out:
        check_new_file(args.out, args.force, in_place=True)  # emit() rewrites it in place
        ckpt = getattr(args, "checkpoint", None)
        run = (Path(ckpt).parent,) if ckpt and Path(ckpt).is_file() else ()
        check_not_input(args.out, args, (".json",), folders=run)
        _check_not_manifest(args)
    if getattr(args, "out_dir", None):
        check_new_dir(args.out_dir, args.force)


def _check_not_manifest(args) -> None:
    """Refuse an existing ``--out`` that is the manifest the checkpoint's config points at (read
    without ``--data``, which no argument names)."""
    ckpt = getattr(args, "checkpoint", None)
    if not ckpt or not Path(args.out).exists() or not Path(ckpt).exists():
        return
    if getattr(args, "data", None):
        return  # an argument: check_not_input has seen it
    from avssl.data.source import manifest_path
    from avssl.train.checkpoint import checkpoint_config, load_checkpoint

    note_checkpoint(ckpt)
    cfg = checkpoint_config(load_checkpoint(ckpt))
    if cfg.data.root is None:  # the synthetic world: not built here if it is not there
        from avssl.data.synthetic import MANIFEST, world_dir

        manifest = world_dir(cfg.data.synthetic) / MANIFEST
    else:
        try:
            manifest = manifest_path(cfg.data, progress=False)
        except AvsslError:
            return  # the evaluation itself says what is missing
    check_not_read(args.out, [manifest], "the manifest of the checkpoint's data")


def add_tta(p: argparse.ArgumentParser) -> None:
    """Add ``--audio-tta`` and ``--audio-tta-views`` (applied by :func:`apply_tta`)."""
    from avssl.audio_tta import DEFAULT_VIEWS

    p.add_argument(
        "--audio-tta", type=float, default=0.0, metavar="R",
        help="embed each sound at speeds in [1-R, 1+R] and average (test-time augmentation; "
        "0: off)",
    )  # fmt: skip
    p.add_argument(
        "--audio-tta-views", type=int, metavar="K",
        help=f"speeds of --audio-tta (default: {DEFAULT_VIEWS})",
    )  # fmt: skip


def add_adapt(p: argparse.ArgumentParser) -> None:
    """Add ``--adapt-bn`` (audio batch-norm re-estimation, see :mod:`avssl.eval.adapt_bn`)."""
    from avssl.eval.adapt_bn import ADAPT_HELP

    p.add_argument("--adapt-bn", action="store_true", help=ADAPT_HELP)


def apply_tta(model, args) -> dict:
    """Set the model's speed test-time augmentation from ``--audio-tta``; its JSON entry.

    Args:
        model: the model; its ``audio_tta`` is set.
        args: parsed arguments with ``audio_tta`` and ``audio_tta_views`` (see :func:`add_tta`).

    Returns:
        ``{"audio_tta": [speed, ...]}``, or ``{}`` when test-time augmentation is off.

    Raises:
        AvsslError: a radius outside ``[0, 1)`` or fewer than 2 views.
    """
    from avssl.audio_tta import tta_speeds

    model.audio_tta = tta_speeds(args.audio_tta, args.audio_tta_views)
    return {"audio_tta": list(model.audio_tta)} if model.audio_tta else {}


def add_strict(p: argparse.ArgumentParser) -> None:
    """Add ``--strict``: an unreadable clip is an error, not a skipped row."""
    p.add_argument("--strict", action="store_true", help="an unreadable clip is an error")


def skip_report(store, strict: bool = False) -> dict:
    """``{"n_skipped": n, "skipped": [{"id", "reason"}, ...]}`` of a clip store's bad rows
    (:func:`avssl.errors.skip_fields`).

    Args:
        store: a :class:`~avssl.data.dataset.ClipStore` (its ``skipped`` list).
        strict: raise on the first bad row instead of reporting it.

    Raises:
        AvsslError: under ``strict``, naming the first bad row.
    """
    if strict and store.skipped:
        item, reason = store.skipped[0]
        raise AvsslError(f"{reason} (row {item!r}; --strict)")
    return skip_fields([{"id": i, "reason": r} for i, r in store.skipped])


def use_data(cfg, manifest: str | None) -> None:
    """Point a checkpoint's config at ``--data MANIFEST`` when given.

    The checkpoint's shard cache (``data.cache``) holds its training data only, so another
    manifest is read from its media.

    Args:
        cfg: the checkpoint's config, changed in place.
        manifest: ``--data``; when empty, the config's own ``data.root`` (if set) is only
            checked to exist.

    Raises:
        AvsslError: no ``--data`` and the config's ``data.root`` holds no manifest here.
    """
    if manifest:
        cfg.data.root = manifest
        cfg.data.cache = None
    elif cfg.data.root is not None:
        from avssl.data.source import manifest_path
        from avssl.errors import ManifestError

        try:
            manifest_path(cfg.data, progress=False)
        except ManifestError:
            raise AvsslError(
                f"{Path(cfg.data.root).expanduser()}: no manifest found (the checkpoint's "
                "data.root, relative to where it was trained; pass --data MANIFEST)"
            ) from None


def emit(result: dict, args, title: str) -> None:
    """Print the result as the last stdout line, write ``--out``, append to the run's report.

    The result gains ``evaluated_at`` (UTC) and ``precision``, and the title what sets the
    evaluation apart (:func:`~avssl.eval.provenance.qualified_title`: other data, TTA, adapted
    batch norms, bf16).

    Args:
        result: the JSON result.
        args: parsed arguments (``out``; ``checkpoint``, whose run directory gets the report).
        title: heading of the result's table in ``report.md``.

    Raises:
        AvsslError: ``--out`` cannot be written (after the report is appended).
    """
    result.setdefault("evaluated_at", utc_now())
    if getattr(args, "precision", None):  # bf16 moves every score a little
        result.setdefault("precision", args.precision)
    text = json_line(result)  # ASCII: a path that is not UTF-8 comes out \u-escaped
    print(text)  # first: a file that cannot be written must not cost the result
    sys.stdout.flush()
    failed = None
    if args.out:  # before report.md: the file asked for must not depend on the convenience
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n", encoding="utf-8")
        except OSError as err:
            failed = AvsslError(f"{out}: cannot write ({err.strerror}); the result is on stdout")
    ckpt = Path(args.checkpoint) if getattr(args, "checkpoint", None) else None
    run_dir = ckpt if ckpt and ckpt.is_dir() else (ckpt.parent if ckpt else None)
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        try:
            append_report(run_dir / "report.md", qualified_title(title, result, args), result)
        except (OSError, UnicodeError) as err:  # e.g. a colleague's read-only run
            why = getattr(err, "strerror", None) or str(err)
            print(f"warning: {run_dir / 'report.md'}: not updated ({why})", file=sys.stderr)
    if failed is not None:
        raise failed


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``evaluate.py SUBCOMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: evaluate.py SUBCOMMAND [ARGS...]\n\nsubcommands:"]
        lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
        # asked for: stdout; no subcommand at all is a mistake: stderr
        print("\n".join(lines), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in SUBCOMMANDS:
        raise AvsslError(f"unknown evaluation {argv[0]!r} (choose from {', '.join(SUBCOMMANDS)})")
    module, func = SUBCOMMANDS[argv[0]][0].split(":")
    return getattr(importlib.import_module(module), func)(argv[1:])
