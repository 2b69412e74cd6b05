"""The refusals of ``evaluate.py classify`` (:mod:`avssl.eval.classify_cli`) that need no data:
flags that do not apply to the dataset, protocol or features asked for, each one line."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

from avssl.data.media_checks import MAX_WINDOW_S
from avssl.errors import AvsslError

HANDCRAFTED = ("logmel", "mfcc")


def check_flags(args) -> None:
    """Refuse flag combinations that would be ignored or meaningless; set ``args.folds``.

    Args:
        args: the parsed ``classify`` arguments.

    Raises:
        AvsslError: naming the flag and the reason.
    """
    if args.checkpoint and not Path(args.checkpoint).exists():  # even where unused: a typo
        raise AvsslError(f"{args.checkpoint}: no such checkpoint or run directory")
    if args.subset and args.dataset != "esc50":
        raise AvsslError("--subset applies to --dataset esc50 only")
    if args.dataset == "folder" and args.protocol == "official":
        raise AvsslError("--dataset folder has no official folds (use --protocol kfold)")
    if args.dataset == "manifest" and args.protocol:
        raise AvsslError("--dataset manifest uses its train/test splits (drop --protocol)")
    if args.features in HANDCRAFTED:  # clip statistics: no network, no windows
        given = (("--audio-tta", args.audio_tta),
                 ("--audio-tta-views", args.audio_tta_views is not None),
                 ("--layer", args.layer != "embedding"), ("--hop", args.hop is not None),
                 ("--pool", args.pool is not None))  # fmt: skip
        for flag, used in given:
            if used:
                raise AvsslError(
                    f"{flag} applies to network features (model, random), not {args.features}"
                )
    if args.init_seed is not None and args.features != "random":
        raise AvsslError(f"--init-seed applies to --features random, not {args.features}")
    if args.features == "model" and not args.checkpoint:
        raise AvsslError("--features model needs --checkpoint")
    if args.hop is not None and args.hop > MAX_WINDOW_S:  # 1e308 overflowed a window count
        raise AvsslError(f"--hop {args.hop:g}: at most {MAX_WINDOW_S:g} s (a clip's longest)")
    kfold_run = args.dataset == "folder" or args.protocol == "kfold"
    if args.folds is not None and args.dataset == "manifest":  # --protocol kfold is refused too
        raise AvsslError(
            "--folds does not apply to --dataset manifest (it uses its train/test splits)"
        )
    if args.folds is not None and not kfold_run:
        raise AvsslError("--folds applies to a k-fold protocol only (--protocol kfold, or folder)")
    args.folds = args.folds or 5
    if args.adapt_bn and (args.dataset != "manifest" or args.features in HANDCRAFTED):
        raise AvsslError(
            "--adapt-bn needs --dataset manifest (its test split is the audio adapted to) and "
            "network features (model, random)"
        )
    if args.source_norm and (args.dataset not in ("manifest", "folder") or not args.group_regex):
        raise AvsslError(
            "--source-norm needs --dataset manifest or folder and --group-regex (the sources, "
            "e.g. the speakers)"
        )
    if args.group_regex and args.dataset in ("esc50", "us8k"):
        raise AvsslError(
            f"--group-regex applies to --dataset folder or manifest, not {args.dataset}"
        )


def check_group_regex(args, items, note: bool = True, decoded: bool = False) -> int:
    """Refuse a ``--group-regex`` that matches none of the clips' names (a typo that would
    leave every clip its own group, the folds ungrouped and each ``--source-norm`` source one
    clip); note on stderr how many it does not match.

    Args:
        args: the parsed ``classify`` arguments.
        items: the listed :class:`~avssl.eval.audio_sets.AudioItem` s that take part (or, after
            decoding, the readable ones: a regex may match only clips that could not be read).
        note: print the note (once: for the readable clips, so that its count is the JSON's
            ``ungrouped_files``; a file that is skipped is no group at all).
        decoded: ``items`` are the readable clips (the refusal says so).

    Returns:
        how many of ``items`` the regex does not match (0 without ``--group-regex``).

    Raises:
        AvsslError: the regex matches none of them.
    """
    missed = [it.unmatched for it in items if it.unmatched is not None]
    if not args.group_regex or not missed:
        return 0
    names, where = (
        ("row ids", f"in {args.root}") if args.dataset == "manifest"
        else ("file names", f"under {args.root}")
    )  # fmt: skip
    readable = " readable" if decoded else ""
    if len(missed) == len(items):
        raise AvsslError(
            f"--group-regex: {args.group_regex!r} matches none of the {len(items)}{readable} "
            f"{names} {where} (e.g. {missed[0]})"
        )
    fallback = "grouped by their recording" if args.dataset == "manifest" else "each its own group"
    if not note:
        return len(missed)
    print(
        f"note: --group-regex {args.group_regex!r} does not match {len(missed)} of the "
        f"{len(items)}{readable} {names} {where} (e.g. {missed[0]}): they are {fallback}",
        file=sys.stderr,
    )
    return len(missed)


def check_source_norm(args, items, readable=None) -> None:
    """With ``--source-norm``, refuse sources of a single clip: standardising a clip by its own
    mean and standard deviation zeroes all its features.

    Args:
        args: the parsed ``classify`` arguments.
        items: the clips, listed (before decoding) or readable (after).
        readable: for listed clips, ``readable(item) -> bool`` decodes one clip. A source of one
            listed clip is refused before the run decodes everything only if that clip can be
            read (tried in turn, up to the first readable one: a file that cannot be read is
            skipped and counted, not a reason to refuse the run); when every source holds one
            clip, at once.

    Raises:
        AvsslError: naming how many sources hold one clip, and one of them.
    """
    if not args.source_norm:
        return
    counts = Counter(it.source for it in items)
    single = [s for s, n in counts.items() if n == 1]
    if not single:
        return
    if readable is not None and len(single) < len(counts):
        alone = set(single)
        found = next((it.source for it in items if it.source in alone and readable(it)), None)
        if found is None:
            return
        single.remove(found)
        single.insert(0, found)  # named as the example: its clip is readable
    raise AvsslError(
        f"--source-norm: {len(single)} of the {len(counts)} sources in {args.root} have a "
        f"single clip (e.g. {single[0]!r}): standardising a clip by its own mean and std "
        "zeroes its features; give a --group-regex whose sources hold several clips"
    )


def one_class(root, labels: list, which: str) -> None:
    """Refuse clips of fewer than two classes: every fold would be a constant guess scoring
    1.0 (a mistyped root whose one sub-folder became the only class)."""
    if len(set(labels)) < 2:
        raise AvsslError(
            f"{root}: the {len(labels)} {which} clips are all of class {labels[0]!r}: a probe "
            "needs at least two classes"
        )


def official_folds(root, items) -> tuple[np.ndarray, list]:
    """The clips' official folds (each item's ``group``) and their leave-one-fold-out splits.

    Args:
        root: the dataset folder (named in the refusal).
        items: the :class:`~avssl.eval.audio_sets.AudioItem` s, listed or readable.

    Returns:
        ``(groups [C], folds)``: see :func:`~avssl.eval.probe_folds.leave_one_group_out`.

    Raises:
        AvsslError: the clips are all of one fold (naming ``root`` and ``--protocol kfold``).
    """
    from avssl.eval.probe_folds import leave_one_group_out

    groups = np.array([it.group for it in items])
    try:
        return groups, leave_one_group_out(groups)
    except AvsslError as err:
        raise AvsslError(
            f"{root}: {err}; --protocol kfold splits the clips by source recording instead"
        ) from None
