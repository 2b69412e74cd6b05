"""What an evaluation result records about what it evaluated, so that its ``report.md`` table
can be told apart from another's: the checkpoint's training step and weights digest, the data
read, the time, and the table title's qualifiers (other data, test-time augmentation, adapted
batch norms, bf16, and the subcommand's options that change its numbers when they differ from
their defaults, but for float rounding: ``--device``, ``--batch-size``, ``--channels-last``).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from avssl.errors import AvsslError


def _manifest_file(path: str | os.PathLike) -> Path:
    """``path`` resolved; a folder stands for the ``manifest.jsonl`` inside it."""
    p = Path(path).expanduser()
    return (p / "manifest.jsonl" if p.is_dir() else p).resolve()


def own_manifest(state: dict) -> Path | None:
    """The manifest a checkpoint was trained on, resolved from where this runs (None: unknown).

    Args:
        state: a loaded checkpoint (its ``config``); the synthetic world is not built here.
    """
    from avssl.train.checkpoint import checkpoint_config

    try:
        data = checkpoint_config(state).data
    except AvsslError:
        return None
    if data.root is None:
        from avssl.data.synthetic import MANIFEST, world_dir

        return (world_dir(data.synthetic) / MANIFEST).resolve()
    return _manifest_file(data.root)


def provenance(model, state: dict, data: str | os.PathLike | None = None) -> dict:
    """The result's entries that identify the evaluated weights and the data read.

    Args:
        model: the loaded model (its learnt parameters are digested; batch-norm statistics,
            which ``--adapt-bn`` re-estimates, are not).
        state: its checkpoint, as :func:`~avssl.train.checkpoint.load_checkpoint` returns it.
        data: the manifest (or its folder) the evaluation read, if any.

    Returns:
        ``{"step": int | None, "weights_digest": str}``, plus ``"data"`` (the resolved path)
        and ``"own_data"`` (whether it is the manifest the checkpoint was trained on) when
        ``data`` is given.
    """
    from avssl.train.checkpoint import weights_digest

    out = {"step": state.get("step"), "weights_digest": weights_digest(model)}
    if data is not None:
        read = _manifest_file(data)
        out.update(data=str(read), own_data=read == own_manifest(state))
    return out


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2025-01-31T12:00:00+00:00``)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def short_path(path: str) -> str:
    """The last two components of ``path`` (``avd3x3/manifest.jsonl``)."""
    return "/".join(Path(path).parts[-2:])


def qualified_title(title: str, result: dict, args) -> str:
    """``title`` with what makes the result differ from a plain evaluation of the checkpoint
    on its own data, inside its parentheses: ``AVC accuracy (test, data=x/manifest.jsonl,
    audio TTA 0.2 in 5 views, adapt-bn, bf16)`` (``--audio-tta-views`` when not the default).

    Args:
        title: the subcommand's title, e.g. ``AVC accuracy (test)``.
        result: the JSON result (``data``, ``own_data``).
        args: parsed arguments (``audio_tta``, ``audio_tta_views``, ``adapt_bn``, ``precision``,
            and the options of :func:`_option_qualifiers`, when the subcommand has them).
    """
    extra = []
    if result.get("data") and result.get("own_data") is not True:
        extra.append(f"data={short_path(result['data'])}")
    extra += _option_qualifiers(args)
    if getattr(args, "audio_tta", 0):
        from avssl.audio_tta import DEFAULT_VIEWS

        views = getattr(args, "audio_tta_views", None)
        views = f" in {views} views" if views not in (None, DEFAULT_VIEWS) else ""
        extra.append(f"audio TTA {args.audio_tta:g}{views}")
    if getattr(args, "adapt_bn", False):
        extra.append("adapt-bn")
    if getattr(args, "precision", None) == "bf16":
        extra.append("bf16")
    if not extra:
        return title
    if title.endswith(")"):
        return f"{title[:-1]}, {', '.join(extra)})"
    return f"{title} ({', '.join(extra)})"


def _option_qualifiers(args) -> list[str]:
    """What a subcommand's own options change in its numbers, when not at their defaults, for
    :func:`qualified_title`: ``avc``'s threshold (``--recalibrate``, ``--cohort``) and windows,
    ``retrieval``'s gallery and CCA, ``classify``'s pooling and hop of network features,
    ``--group-regex`` and ``--init-seed`` (its protocol and ``--folds`` are in its title
    already), ``sync``'s ``--max-offset`` and ``--times``, a seed other than 0 (``classify``'s
    folds, ``sync``'s shifts, ``localize``'s random baseline)."""
    from avssl.eval.cca import DEFAULT_COMPONENTS, DEFAULT_RIDGE
    from avssl.eval.clip_features import DEFAULT_HOP, DEFAULT_POOL
    from avssl.eval.sync_clip import DEFAULT_MAX_OFFSET, DEFAULT_TIMES

    extra = []
    if getattr(args, "recalibrate", None):
        extra.append(f"threshold from {args.recalibrate}")
    if getattr(args, "cohort", 0):
        top = getattr(args, "cohort_top", None)
        extra.append(f"cohort {args.cohort}" + (f" top {top}" if top else ""))
    if getattr(args, "windows", 4) != 4:  # avc's default
        extra.append(f"{args.windows} windows")
    if getattr(args, "gallery", None):
        extra.append(f"gallery={short_path(args.gallery)}")
    if getattr(args, "cca_dim", None) not in (None, DEFAULT_COMPONENTS):
        extra.append(f"CCA {args.cca_dim}")
    if getattr(args, "cca_ridge", None) not in (None, DEFAULT_RIDGE):
        extra.append(f"ridge {args.cca_ridge:g}")
    if getattr(args, "pool", None) not in (None, DEFAULT_POOL):  # None: clip statistics
        extra.append(f"{args.pool} pool")
    if getattr(args, "hop", None) not in (None, DEFAULT_HOP):
        extra.append(f"hop {args.hop:g} s")
    if getattr(args, "max_offset", DEFAULT_MAX_OFFSET) != DEFAULT_MAX_OFFSET:
        extra.append(f"max offset {args.max_offset:g} s")
    if getattr(args, "times", DEFAULT_TIMES) != DEFAULT_TIMES:
        extra.append(f"{args.times} frame times")
    if getattr(args, "group_regex", None):  # other groups: other folds (or inner CV)
        extra.append(f"grouped by {args.group_regex}")
    if getattr(args, "seed", None):
        extra.append(f"seed {args.seed}")
    if getattr(args, "init_seed", None) not in (None, getattr(args, "seed", None)):
        extra.append(f"init seed {args.init_seed}")
    return extra
