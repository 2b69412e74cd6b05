"""``evaluate.py classify``: linear probe on frozen audio embeddings (see :mod:`avssl.eval.probe`).

usage::

    evaluate.py classify --dataset esc50|us8k|folder|manifest --root DIR|MANIFEST.jsonl
        [--features model|logmel|mfcc|random] [--checkpoint CKPT] [--subset esc10]
        [--folds 5] [--group-regex RE] [--layer embedding|tower|grid] [--pool mean|max] [--hop 0.5]
        [--classifier logreg|svm] [--precision fp32|bf16] [--source-norm] [--strict]

``--features model`` needs ``--checkpoint``; ``random`` is the same network untrained (the
checkpoint's config when given, else the default config); ``logmel`` and ``mfcc`` (the ESC-50
paper's baseline features) need no network. ``logmel`` takes the checkpoint's front end when
one is given (its sample rate, FFT size, window, hop and mel bands), so that the baseline hears
what the network hears; without one, the default config's (16 kHz, 1,024-point FFT, 640 / 320
samples, 40 bands).
``--layer tower`` probes the audio tower's pooled output instead of the embedding the method's
head makes of it (the same for methods without an audio head); ``--layer grid`` the tower's last
map max-pooled to 4 x 3 cells (frequency x time), L3's features for sound classification
(https://arxiv.org/abs/1705.08168: 6,144-d at 512 channels; with ``--classifier svm``, as L3's
linear SVM). ``--layer``, ``--pool``,
``--hop`` and ``--audio-tta`` are refused with ``logmel`` and ``mfcc`` (clip statistics).

``--dataset manifest`` probes a manifest's labelled rows (each row's audio in its start/end
window, first label as class) with one fixed split: trained on split ``train`` (``C`` by
stratified CV inside it, grouped by ``--group-regex`` on row ids when given), tested on split
``test``; split ``val`` is ignored (neither trained nor tested on). For speaker-disjoint splits
this is "a linear probe trained on the training speakers, tested on unseen speakers".

``--source-norm`` (``manifest`` or ``folder``, with ``--group-regex``) standardises each
source's features (e.g. each speaker's) by that source's own statistics before the probe: a
transductive protocol variant (a test voice is normalised with its own unlabelled clips),
reported as such in the JSON; a source of a single clip (which standardising would zero) is
refused. A ``--group-regex`` matching none of the file names (row ids) is refused as a typo;
one missing some is noted on stderr and the JSON counts them in ``ungrouped_files``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from avssl.cli import ArgumentParser, int_at_least, positive_float, positive_int
from avssl.errors import AvsslError, skip_fields
from avssl.eval.adapt_bn import extract_adapted
from avssl.eval.classify_checks import (
    check_flags,
    check_group_regex,
    check_source_norm,
    official_folds,
    one_class,
)
from avssl.eval.classify_extractor import make_extractor
from avssl.eval.cli import (
    SUBCOMMANDS,
    add_adapt,
    add_common,
    add_tta,
    check_outputs,
    emit,
)

FEATURES = ("model", "logmel", "mfcc", "random")
LAYERS = ("embedding", "tower", "grid")


def build_parser() -> argparse.ArgumentParser:
    """The ``evaluate.py classify`` argument parser."""
    p = ArgumentParser(prog="evaluate.py classify", description=SUBCOMMANDS["classify"][1])
    add_common(p, checkpoint_required=False)
    p.add_argument("--dataset", required=True, choices=("esc50", "us8k", "folder", "manifest"))
    p.add_argument(
        "--root", required=True, help="dataset folder (manifest: a .jsonl or its folder)"
    )
    p.add_argument("--features", default="model", choices=FEATURES)
    p.add_argument("--subset", choices=("esc10",), help="esc50 only: keep the ESC-10 rows")
    p.add_argument(
        "--protocol", choices=("official", "kfold"),
        help="esc50/us8k: leave one official fold out (default), or a stratified k-fold grouped "
        "by source recording (for subsets whose official folds are degenerate); folder: kfold",
    )  # fmt: skip
    p.add_argument(
        "--folds", type=int_at_least(2), help="k of the stratified group k-fold (default 5)"
    )
    p.add_argument(
        "--group-regex",
        help="folder: recording id in file names (one fold each); manifest: source id in row ids "
        "(never split by the inner CV)",
    )
    p.add_argument(
        "--layer", default="embedding", choices=LAYERS,
        help="network features: the audio embedding (through the method's head), the audio "
        "tower's pooled output before the head, or its last map max-pooled to a 4 x 3 grid "
        "(L3's sound classification features)",
    )  # fmt: skip
    p.add_argument(
        "--pool", choices=("mean", "max"), help="network features: of the windows (default: mean)"
    )
    p.add_argument(
        "--hop", type=positive_float,
        help="network features: seconds between windows (default: 0.5; at most 600)",
    )  # fmt: skip
    p.add_argument("--classifier", default="logreg", choices=("logreg", "svm"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--channels-last", action="store_true", help="faster bf16 convs on CPUs")
    p.add_argument("--batch-size", type=positive_int, default=64, help="windows per forward pass")
    p.add_argument(
        "--source-norm", action="store_true",
        help="standardise each --group-regex source's features by its own mean and std "
        "(transductive: uses the unlabelled test clips of each source)",
    )  # fmt: skip
    add_tta(p)
    add_adapt(p)
    p.add_argument(
        "--seed", type=int_at_least(0, 2**32 - 1), default=0,
        help="draws the k-fold and inner folds (and, without --init-seed, the untrained network)",
    )  # fmt: skip
    p.add_argument(
        "--init-seed", type=int_at_least(0, 2**32 - 1),
        help="--features random: the untrained network's weights (default --seed), so that "
        "network draws can be varied over the same folds",
    )  # fmt: skip
    p.add_argument("--strict", action="store_true", help="an unreadable file is an error")
    return p


def run(argv: list[str]) -> int:
    """Run the probe; the last stdout line is the JSON result."""
    args = build_parser().parse_args(argv)
    check_outputs(args)
    check_flags(args)
    from avssl.eval.audio_sets import list_dataset
    from avssl.eval.clip_features import extract
    from avssl.eval.probe import (
        fixed_split,
        group_kfold,
        linear_probe,
        standardize_by_group,
    )
    from avssl.train.runtime import resolve_device

    t0 = time.perf_counter()
    bad_rows = None if args.strict else []  # malformed metadata rows: skipped and listed
    items = list_dataset(args.dataset, args.root, args.subset, args.group_regex, bad_rows)
    if args.dataset == "manifest":  # the validation split takes no part in the probe
        items = [it for it in items if it.group in ("train", "test")]
    if not items:
        raise AvsslError(f"{args.root}: no clips listed")
    one_class(args.root, [it.label for it in items], "listed")
    check_group_regex(args, items, note=False)  # before any decoding: matching nothing: a typo
    predefined = args.dataset in ("esc50", "us8k") and args.protocol != "kfold"

    def kfold(clips):  # checked on the listed clips first, so that a vain run decodes nothing
        labels = np.array([c.label for c in clips])
        groups = np.array([c.source or c.group for c in clips])
        try:
            return group_kfold(labels, groups, args.folds, args.seed, "--folds")
        except AvsslError as err:
            raise AvsslError(f"{args.root}: {err}") from None

    device = resolve_device(args.device, "--device")
    extractor, info = make_extractor(args, device)
    info.setdefault("data", str(Path(args.root).expanduser().resolve()))
    if args.dataset != "manifest" and not predefined:
        kfold(items)
    if predefined:  # one official fold alone: refused before decoding
        official_folds(args.root, items)

    def readable(item) -> bool:  # one clip decoded (and featurised): the check's, before the run
        window = [(item.start, item.duration)]
        return bool(extract([item.path], extractor, args.strict, windows=window)[1])

    check_source_norm(args, items, readable)
    if args.adapt_bn:
        x, kept, skipped, timing, adapt = extract_adapted(items, extractor, args)
        info.update(adapt)
    else:
        x, kept, skipped, timing = extract(
            [it.path for it in items], extractor, args.strict, progress=not args.no_progress,
            windows=[(it.start, it.duration) for it in items],
        )  # fmt: skip
    items = [items[i] for i in kept]
    skipped = (bad_rows or []) + skipped
    if len(items) < 2:
        first = f"; first: {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        raise AvsslError(
            f"{args.root}: {len(items)} readable clips ({len(skipped)} skipped{first})"
        )
    one_class(args.root, [it.label for it in items], "readable")
    check_group_regex(args, items, decoded=True)  # it may match only skipped clips; the note
    # counts the readable clips it misses, as the JSON's ungrouped_files does
    check_source_norm(args, items)  # a skipped clip may leave its source one clip
    y = np.array([it.label for it in items])
    if args.dataset == "manifest":
        # inner CV over the training rows only, grouped by source (--group-regex, else an
        # ESC-50 / US8K clip's recording, else the rows of one media file)
        try:
            folds = fixed_split(np.array([it.group for it in items]))
        except AvsslError as err:  # a split without a readable clip: name the manifest
            raise AvsslError(f"{args.root}: {err}") from None
        groups = np.array([it.source for it in items])
        protocol = "train -> test split (val ignored)"
    elif predefined:
        groups, folds = official_folds(args.root, items)
        protocol = "leave-one-fold-out"
    else:
        groups = np.array([it.source or it.group for it in items])
        folds = kfold(items)
        protocol = f"stratified group {args.folds}-fold"
    scheme = protocol  # the title's, without the transductive notes (adapt-bn has its own)
    if args.source_norm:
        x = standardize_by_group(x, np.array([it.source for it in items]))
        protocol += "; features standardised per source (transductive)"
        scheme += ", source-norm"
    if args.adapt_bn:  # the batch-norm statistics came from the clips scored, test ones too
        protocol += "; audio batch norm adapted to the clips (transductive)"
    result = linear_probe(x, y, groups, folds, predefined, args.classifier, args.seed)
    # the clips --group-regex did not match (each its own group, or a manifest row's recording)
    ungrouped = {"ungrouped_files": sum(it.unmatched is not None for it in items)}
    ungrouped = ungrouped if args.group_regex else {}
    result = {
        **{k: result[k] for k in ("accuracy_mean", "accuracy_std", "accuracy_pooled", "per_fold")},
        "n_clips": len(items),
        "n_classes": len(set(y.tolist())),
        "feature_dim": int(x.shape[1]),
        **info,
        "dataset": args.dataset,
        "protocol": protocol,
        "classifier": args.classifier,
        "source_norm": args.source_norm,
        "group_regex": args.group_regex,  # None: each clip's own source (or recording)
        **ungrouped,
        "pool": args.pool,  # None for clip statistics
        "hop": args.hop,  # the same
        "seed": args.seed,  # the folds' draw (and, for --features random, the default init)
        "chance": float(np.bincount(np.unique(y, return_inverse=True)[1]).max() / len(y)),
        **skip_fields(skipped),
        "embed_clips_per_s": timing["clips_per_s"],
        "embed_audio_s_per_s": timing["audio_seconds"] / max(timing["seconds"], 1e-9),
        "seconds": time.perf_counter() - t0,
    }
    # the title tells apart what report.md shows of one checkpoint (subset, layer, protocol)
    what = [args.dataset + (f"/{args.subset}" if args.subset else ""), args.features]
    if args.features in ("model", "random") and args.layer != "embedding":
        what.append(f"layer {args.layer}")
    if args.classifier != "logreg":
        what.append(args.classifier)
    emit(result, args, f"Sound classification ({', '.join([*what, scheme])})")
    return 0
