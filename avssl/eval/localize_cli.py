"""``evaluate.py localize``: heatmaps of the test clips scored against their boxes.

Each clip with ``boxes["sources"]`` in its manifest row gives one item: its centre frame and
the audio window centred on it (``no_box`` counts the clips without; ``empty_gt`` the items whose
boxes draw nothing, which score 0). ``--protocol vggss`` takes the union of the source boxes as
ground truth; ``--protocol flickr`` the consensus of the annotators' boxes
(``boxes["annotators"]``, else each source box as one annotator's; see
:mod:`avssl.eval.localization`). ``--protocol auto`` (default) picks per item: flickr for a row
with ``boxes["annotators"]`` (written by ``prepare.py flickr``), else vggss. The result's
``protocol`` is the one used, or ``mixed``, and ``protocol_items`` counts the items of each. Two
baselines are scored on the same items in the same run: a centre Gaussian prior and uniform
random maps at the model's map resolution (seeded).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from avssl.cli import ArgumentParser, int_at_least
from avssl.cli_checkpoint import load_command_model
from avssl.errors import AvsslError
from avssl.eval.cli import (
    SUBCOMMANDS,
    add_adapt,
    add_common,
    add_strict,
    add_tta,
    apply_tta,
    check_outputs,
    emit,
    skip_report,
    use_data,
)


def safe_name(index: int, row_id: str) -> str:
    """A file name for item ``index`` whose row id may hold any characters.

    Args:
        index: the item's position (zero-padded to 5 digits, so names sort in item order).
        row_id: the item's manifest row id (reduced to ``[A-Za-z0-9_-]``, at most 80 characters).

    Returns:
        ``<index>_<id>.png``.
    """
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", row_id).strip("_")[:80]
    return f"{index:05d}_{stem or 'item'}.png"


def item_protocol(boxes: dict, protocol: str) -> tuple[str, list]:
    """The protocol one item is scored with, and the boxes its ground truth is drawn from.

    Args:
        boxes: the row's ``boxes`` (with ``"sources"``; ``"annotators"`` on Flickr rows).
        protocol: ``auto`` (``flickr`` when the row has ``"annotators"``, else ``vggss``),
            ``vggss`` or ``flickr``.

    Returns:
        ``(protocol, boxes)``: ``flickr`` takes ``"annotators"`` when present, else
        ``"sources"`` (manifests written before the key existed); ``vggss`` takes ``"sources"``.
    """
    if protocol == "auto":
        protocol = "flickr" if "annotators" in boxes else "vggss"
    if protocol == "flickr":
        return protocol, boxes.get("annotators", boxes["sources"])
    return protocol, boxes["sources"]


def box_error(manifest, rows: list, protocol: str, what: str = "test clip") -> AvsslError | None:
    """The error of ``rows`` none of which can be scored for lack of a box, else None.

    An item needs ``boxes["sources"]`` (a row without is counted as ``no_box``), and its boxes
    must draw something at 224x224 (:func:`~avssl.eval.localization.gt_map`): an item whose
    boxes draw nothing scores 0, and when no item has such a box every metric is 0 whatever the
    heatmaps.

    Args:
        manifest: the manifest the rows come from (named in the error).
        rows: the manifest rows read (before or after decoding).
        protocol: ``--protocol``.
        what: what a row is, for the message.
    """
    from avssl.eval.localization import gt_map

    boxed = [r for r in rows if isinstance(r.boxes, dict) and "sources" in r.boxes]
    if not boxed:
        return AvsslError(f"{manifest}: no {what} has source boxes")
    if any(gt_map(*reversed(item_protocol(r.boxes, protocol))).any() for r in boxed):
        return None
    return AvsslError(
        f"{manifest}: no {what} has a usable box (the boxes of all {len(boxed)} with boxes draw "
        "nothing at 224x224: none listed, or under one pixel)"
    )


def save_overlay(path: Path, frame, heatmap, alpha: float = 0.5) -> None:
    """Blend a heatmap (``jet`` colour map) over its frame and save a 224x224 PNG.

    Args:
        path: output file.
        frame: uint8 ``[3, H, W]``.
        heatmap: ``[h, w]`` (resized and normalised as for scoring).
        alpha: heatmap opacity.
    """
    import torch
    from matplotlib import colormaps
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    from avssl.eval.localization import SIZE, normalise_map

    img = TF.resize(torch.as_tensor(frame), [SIZE, SIZE], antialias=True)
    img = img.permute(1, 2, 0).numpy().astype(np.float64) / 255
    colour = colormaps["jet"](normalise_map(heatmap))[..., :3]
    blend = (1 - alpha) * img + alpha * colour
    Image.fromarray(np.clip(blend * 255 + 0.5, 0, 255).astype(np.uint8)).save(path)


def check_out_dir(args) -> None:
    """Create ``--out-dir`` before the evaluation's long part (it must not end on a folder that
    cannot be made), and refuse it as the ``--out`` file too.

    Raises:
        AvsslError: naming the folder and the reason.
    """
    if not args.out_dir:
        return
    out_dir = Path(args.out_dir)
    if args.out and Path(args.out).resolve() == out_dir.resolve():
        raise AvsslError(f"{out_dir}: both --out and --out-dir; the JSON needs a file of its own")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AvsslError(f"{out_dir}: --out-dir cannot be made ({err.strerror})") from None


def run(argv: list[str]) -> int:
    """``evaluate.py localize --checkpoint CKPT [--data M] [--protocol P] [--out-dir DIR]
    [--audio-tta R] [--adapt-bn]``."""
    p = ArgumentParser(prog="evaluate.py localize", description=SUBCOMMANDS["localize"][1])
    add_common(p)
    p.add_argument("--data", help="manifest (default: the data the checkpoint was trained on)")
    p.add_argument(
        "--protocol", default="auto", choices=("auto", "vggss", "flickr"),
        help="ground truth: vggss = union of the boxes; flickr = consensus of the annotators' "
        "boxes (sum / 2, clipped to 1); auto (default) = flickr for rows with boxes.annotators "
        "(prepare.py flickr), else vggss. The result's protocol is the one used, or mixed, "
        "and protocol_items counts the items of each",
    )  # fmt: skip
    p.add_argument(
        "--out-dir",
        help="save each heatmap blended over its frame as a PNG here (a non-empty folder only "
        "with --force)",
    )
    p.add_argument(
        "--seed", type=int_at_least(0), default=0, help="seed of the random-map baseline"
    )
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument(
        "--frame-size", type=int,
        help="resize frames to this side instead of the checkpoint's data.frame_size: a fully "
        "convolutional map then sees larger pictures at the training scale (e.g. AV-Digits "
        "3x3 canvases for a model trained on 2x2 ones)",
    )  # fmt: skip
    add_tta(p)
    add_adapt(p)
    add_strict(p)
    args = p.parse_args(argv)
    check_outputs(args)

    from avssl.data.manifest import read_manifest
    from avssl.data.source import manifest_path, open_store, pick_rows, too_few_error
    from avssl.eval.adapt_bn import adapt_on_waves
    from avssl.eval.embed import heatmaps
    from avssl.eval.localization import (
        centre_prior,
        gt_map,
        localization_metrics,
        random_maps,
    )
    from avssl.eval.provenance import provenance
    from avssl.eval.retrieval import centre_pairs
    from avssl.train.runtime import resolve_device

    device = resolve_device(args.device, "--device")
    model, cfg, state = load_command_model(args.checkpoint, device)
    tta = apply_tta(model, args)
    if not model.has_map:
        raise AvsslError(
            f"{state['path']}: method {cfg.model.method!r} has no localisation map "
            "(use avolnet or contrastive with model.spatial=true)"
        )
    use_data(cfg, args.data)
    own_size = cfg.data.frame_size
    if args.frame_size is not None:
        if not 16 <= args.frame_size <= 4096:
            raise AvsslError(f"--frame-size {args.frame_size}: outside 16..4096")
        cfg.data.frame_size = cfg.data.load_size = args.frame_size
        if args.frame_size != own_size:  # the shard cache holds frames at the training size
            cfg.data.cache = None
    check_out_dir(args)  # once the flags and the checkpoint are good, before the long part
    manifest = manifest_path(cfg.data, not args.no_progress)
    rows = pick_rows(read_manifest(manifest), "test")
    if not rows:
        raise AvsslError(f"{manifest}: split 'test' has no rows")
    err = box_error(manifest, rows, args.protocol)  # from the manifest: before decoding
    if err is not None:
        raise err
    # the store alone: localisation forms no pairs, so one annotated clip is enough
    store = open_store(rows, manifest, cfg.data, "test", False, not args.no_progress)
    if not len(store):
        raise too_few_error(manifest, "test", len(rows), store)
    skips = skip_report(store, args.strict)
    err = box_error(store.manifest, store.rows, args.protocol, "readable test clip")
    if err is not None:  # the rows with usable boxes were unreadable
        raise err
    # An annotated clip whose boxes draw nothing stays in, scored 0, as in the reference code:
    # the real vggss.json has a few zero-area boxes, and dropping them would change the
    # denominator of a published table.
    idx = [
        i for i, r in enumerate(store.rows) if isinstance(r.boxes, dict) and "sources" in r.boxes
    ]
    chosen = [item_protocol(store.rows[i].boxes, args.protocol) for i in idx]
    gts = [gt_map(boxes, protocol) for protocol, boxes in chosen]
    counts = {name: sum(1 for c in chosen if c[0] == name) for name in ("flickr", "vggss")}
    used = [name for name, n in counts.items() if n]
    protocol = used[0] if len(used) == 1 else "mixed"
    frames, waves = centre_pairs(store, cfg.data.frame_size)
    adapt = {}
    if args.adapt_bn:
        adapt = adapt_on_waves(model, waves, device, args.precision, cfg.train.batch_size)
    maps = heatmaps(model, frames[idx], waves[idx], device, args.precision, cfg.train.batch_size)
    maps = maps.numpy()

    result = localization_metrics(maps, gts)
    result["baselines"] = {
        "center": localization_metrics([centre_prior()] * len(gts), gts),
        "random": localization_metrics(random_maps(len(gts), maps.shape[1:], args.seed), gts),
    }
    result.update(
        pointing_ties="share",  # ties at the maximum scored by the share inside (since 2026-12-06)
        frame_size=cfg.data.frame_size,
        baseline_seed=args.seed,
        protocol=protocol,
        protocol_items=counts,
        no_box=len(store) - len(idx),
        empty_gt=sum(1 for g in gts if not g.any()),
        **skips,
        checkpoint=state["path"],
        **tta,
        **adapt,
        **provenance(model, state, store.manifest),
    )
    size = f", frame {cfg.data.frame_size}" if cfg.data.frame_size != own_size else ""
    emit(result, args, f"Localisation ({protocol}, test{size})")
    if args.out_dir:  # after the result: a file that cannot be written must not cost it
        for k, i in enumerate(idx):
            path = Path(args.out_dir) / safe_name(k, store.rows[i].id)
            try:
                save_overlay(path, (frames[i] * 255).round().byte(), maps[k])
            except OSError as err:
                raise AvsslError(f"{path}: cannot write ({err.strerror}); the result is on "
                                 "stdout") from None  # fmt: skip
    return 0
