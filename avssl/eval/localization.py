"""Sound-source localisation scored as the Flickr-SoundNet and VGG-SS reference evaluations do.

Protocol of the public reference code of "Localizing Visual Sounds the Hard Way" (Chen et al.,
CVPR 2021, https://arxiv.org/abs/2104.02691), for one heatmap and its boxes (EZ-VSL's code,
https://arxiv.org/abs/2203.09324, differs in details: ``>=`` at the threshold and a resize with
aligned corners):

1. the heatmap is resized to 224x224 (bilinear) and min-max normalised (a flat map becomes all
   zeros and scores 0 here, counted as ``flat_maps``; the reference leaves a flat map
   unnormalised and predicts every pixel of one of values >= 0, so its cIoU there is the box's
   share of the frame, and no pixel of a negative one);
2. prediction: the pixels *strictly* above ``sorted(map)[224 * 224 // 2]``, and those equal to
   the maximum, 1 (the reference sets the pixels above the threshold to 1, then those below 1 to
   0: when more than half the map ties at its maximum, the threshold is 1 and they stay). Other
   tied pixels at the threshold fall out, so a map of few levels can predict far fewer pixels
   than half the frame;
3. ground truth: each box, normalised ``[x0, y0, x1, y1]``, fills ``gt[int(224 * max(y0, 0)) :
   int(224 * max(y1, 0)), int(224 * max(x0, 0)) : int(224 * max(x1, 0))]``. VGG-SS: the union
   of the boxes (binary). Flickr: each annotator's box adds 1, the sum is divided by 2 and
   clipped to 1 (agreement of two annotators gives full weight);
4. ``cIoU = sum(pred * gt) / (sum(gt) + sum(pred * [gt == 0]))``. An item whose boxes draw
   nothing (zero-area boxes, which the real ``vggss.json`` has) stays in the test set and
   scores 0, as in the reference (0 also where the reference divides 0 by 0);
5. over items: ``ciou@0.5`` = share of items with cIoU >= 0.5, ``auc`` =
   ``sklearn.metrics.auc`` of the success rate ``mean(cIoU >= t)`` over
   ``t = 0.05 * i, i = 0..20``, and ``mean_ciou``.

Because half the frame is always predicted, cIoU is capped for small sources (0.5 for a perfect
heatmap of a quarter-frame source). Two uncapped measures complement it: ``pointing`` (the
heatmap's argmax lies where ``gt > 0``; unlike Zhang et al.'s pointing game there is no 15-pixel
tolerance, and on Flickr a cell one annotator marked counts) and the adaptive cIoU, binarising
to the ``count(gt > 0)`` highest pixels (stable order on ties). When several pixels tie at the
maximum, an item's pointing is the share of them inside the ground truth: the expected hit of
an argmax drawn among them (a centre prior's four central pixels tie, and taking the first in
row-major order would credit the top-left quarter alone). A flat map (no information) or one
holding a NaN or an infinity scores 0 on all three (:func:`score_item`).

The annotation files (``vggss.json``, Flickr XML) are read by :mod:`avssl.data.annotations`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import auc as sk_auc

from avssl.eval.arrays import as_array

SIZE = 224
PROTOCOLS = ("vggss", "flickr")
THRESHOLDS = [0.05 * i for i in range(21)]  # as the reference builds them (float rounding too)
PIXEL_LIKE = 2.0  # a box coordinate above this is taken for pixels (gt_map warns)

__all__ = [
    "SIZE", "THRESHOLDS", "centre_prior", "ciou", "gt_map", "localization_metrics", "median_mask",
    "normalise_map", "random_maps", "score_item", "success_metrics", "topk_mask",
]  # fmt: skip


def _check_map(name: str, x, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``x`` as an array, or a ValueError naming ``name`` when it is not one 2-D map (of
    ``shape`` when given): a batch ``[1, h, w]`` or a flat ``[h * w]`` failed deep in torch's
    resize, and maps of other shapes broadcast into a wrong number."""
    arr = as_array(x)
    if arr.ndim != 2 or not arr.size or (shape is not None and arr.shape != shape):
        want = f"[{shape[0]}, {shape[1]}]" if shape else "one map [h, w]"
        raise ValueError(f"{name} must be {want}, got shape {list(arr.shape)}")
    return arr


def normalise_map(heatmap) -> np.ndarray:
    """Resize a heatmap ``[h, w]`` to ``[224, 224]`` (bilinear) and min-max normalise it.

    Args:
        heatmap: one map ``[h, w]`` (array or tensor; a batch ``[1, h, w]`` is refused).

    A float64 map is resized and normalised in float64 (as cv2, the reference's resize, keeps
    it), others in float32: rounded to float32, a float64 map's close values tie, and tied
    pixels at the median fall out of the prediction.

    Returns:
        float64 ``[224, 224]`` in [0, 1] (all zeros for a flat map).

    Raises:
        ValueError: ``heatmap`` is not 2-D.
    """
    arr = _check_map("heatmap", heatmap)
    dtype = torch.float64 if arr.dtype == np.float64 else torch.float32
    x = torch.as_tensor(np.ascontiguousarray(arr), dtype=dtype)
    if not bool(x.max() > x.min()):  # flat (or NaN): judged before the resize,
        return np.zeros((SIZE, SIZE))  # whose float32 rounding gives a 2 x 2 one noise to stretch
    if x.shape != (SIZE, SIZE):
        x = F.interpolate(x[None, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        x = x[0, 0]
    x = x.double().numpy()
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def median_mask(pred: np.ndarray) -> np.ndarray:
    """bool ``[224, 224]``: pixels strictly above the value at index ``224 * 224 // 2`` of a
    normalised map, or equal to its maximum 1 (as the reference binarises; module doc)."""
    thr = np.sort(pred.ravel())[pred.size // 2]
    return (pred > thr) | (pred == 1.0)


def topk_mask(pred: np.ndarray, k: int) -> np.ndarray:
    """bool mask of the ``k`` highest pixels (ties: lower row-major index first).

    Args:
        pred: a normalised map, e.g. ``[224, 224]`` from :func:`normalise_map`.
        k: how many pixels to keep (0: an empty mask).

    Returns:
        bool, the shape of ``pred``.
    """
    order = np.argsort(-pred.ravel(), kind="stable")[:k]
    mask = np.zeros(pred.size, bool)
    mask[order] = True
    return mask.reshape(pred.shape)


def gt_map(boxes: list, protocol: str = "vggss") -> np.ndarray:
    """Ground-truth map ``[224, 224]`` of normalised ``[x0, y0, x1, y1]`` boxes (module doc).

    Args:
        boxes: the item's boxes, each ``[x0, y0, x1, y1]`` in [0, 1] (negative coordinates are
            clipped to 0; an empty or inverted box draws nothing).
        protocol: ``vggss`` (binary union) or ``flickr`` (annotator agreement).

    Returns:
        float64 ``[224, 224]`` in [0, 1].

    Raises:
        ValueError: an unknown ``protocol``, or a box that is not 4 finite numbers.

    Warns:
        UserWarning: a coordinate above 2, which no box of the frame overrunning its edge
            reaches: pixel coordinates (a manifest refuses them) draw nothing or the frame's
            edge here, so every item would score about 0; the map is drawn as the reference
            draws it.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    acc = np.zeros((SIZE, SIZE))
    for box in boxes:
        x0, y0, x1, y1 = (int(SIZE * max(v, 0.0)) for v in _check_box(box))
        acc[y0:y1, x0:x1] += 1
    if protocol == "vggss":
        return (acc > 0).astype(np.float64)
    return np.minimum(acc / 2, 1.0)


def _check_box(box) -> list[float]:
    """``box`` as 4 floats, or the ValueError :func:`gt_map` documents."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ValueError(f"a box must be 4 numbers [x0, y0, x1, y1], got {box!r}")
    if any(v > PIXEL_LIKE for v in values):  # a negative one is clipped, as the reference
        warnings.warn(  # does (vggss.json has -2.9e16): numbers kept, a notebook warned
            f"box {box!r} is not normalised to [0, 1] (pixel coordinates? divide by the frame's "
            "width and height)",
            stacklevel=3,
        )
    return values


def ciou(mask: np.ndarray, gt: np.ndarray) -> float:
    """Consensus IoU of a binary prediction and a (possibly graded) ground-truth map.

    0 when both are empty (the formula's 0 / 0).

    Args:
        mask: bool ``[224, 224]`` prediction (array or tensor).
        gt: float ``[224, 224]`` ground truth in [0, 1] (:func:`gt_map`).

    Raises:
        ValueError: ``mask`` and ``gt`` are not 2-D maps of one shape (they broadcast into a
            wrong number).
    """
    gt = _check_map("gt", gt)
    mask = _check_map("mask", mask, gt.shape).astype(np.float64)
    union = gt.sum() + (mask * (gt == 0)).sum()
    return float((mask * gt).sum() / union) if union > 0 else 0.0


def score_item(heatmap, gt: np.ndarray) -> dict:
    """cIoU (reference), adaptive cIoU and pointing hit of one heatmap against its ``gt`` map.

    An empty ``gt`` (boxes that draw nothing) scores 0 on all three, and so does a flat map or
    one holding a NaN or an infinity (min-max normalisation flattens it to zeros): it says
    nothing of where the source is, yet its ties would earn pointing credit in proportion to the
    box's area and adaptive-cIoU credit in the top-left corner.

    Args:
        heatmap: the model's map ``[h, w]`` (array or tensor; resized and normalised here).
        gt: ``[224, 224]`` from :func:`gt_map`.

    Returns:
        ``{"ciou": float, "ciou_adaptive": float, "pointing": float}`` (pointing: 1.0 or 0.0
        for a single maximum, the share of tied maxima inside ``gt`` otherwise), with
        ``"nonfinite": True`` for a map that is not finite, ``"flat": True`` for a flat one.

    Raises:
        ValueError: ``heatmap`` is not one 2-D map, or ``gt`` is not ``[224, 224]``.
    """
    miss = {"ciou": 0.0, "ciou_adaptive": 0.0, "pointing": 0.0}
    heatmap = _check_map("heatmap", heatmap)
    gt = _check_map("gt", gt, (SIZE, SIZE))
    if not np.isfinite(np.asarray(heatmap, dtype=np.float64)).all():
        return {**miss, "nonfinite": True}
    pred = normalise_map(heatmap)
    if not pred.any():  # flat: a normalised map that is not flat reaches 1
        return {**miss, "flat": True}
    k = int((gt > 0).sum())
    return {
        "ciou": ciou(median_mask(pred), gt),
        "ciou_adaptive": ciou(topk_mask(pred, k), gt),
        "pointing": float(np.mean(gt[pred == pred.max()] > 0)),  # ties: expected hit
    }


def success_metrics(cious) -> dict:
    """``ciou@0.5``, ``auc`` (success rate vs threshold, 0..1 by 0.05) and ``mean_ciou``.

    Args:
        cious: float ``[M]``, one cIoU per item (:func:`score_item`).

    Raises:
        ValueError: no items (the rates would be 0 / 0), or not one value per item.
    """
    c = np.asarray(cious, dtype=np.float64)
    if c.ndim != 1 or not len(c):
        raise ValueError(f"cious must be one value per item [M], M > 0; got shape {list(c.shape)}")
    rates = [float(np.sum(c >= t) / len(c)) for t in THRESHOLDS]
    return {
        "ciou@0.5": float(np.sum(c >= 0.5) / len(c)),
        "auc": float(sk_auc(THRESHOLDS, rates)),
        "mean_ciou": float(np.mean(c)),
    }


def localization_metrics(heatmaps, gts: list[np.ndarray]) -> dict:
    """Every measure over items: heatmaps ``[h, w]`` each and their :func:`gt_map` maps.

    Args:
        heatmaps: one ``[h, w]`` map per item (e.g. an ``[M, h, w]`` array or tensor).
        gts: the items' ``[224, 224]`` ground-truth maps, as many as ``heatmaps``.

    Returns:
        ``ciou@0.5``, ``auc``, ``mean_ciou``, ``pointing``, ``ciou_adaptive@0.5``,
        ``auc_adaptive``, ``n``, ``nonfinite_maps`` and ``flat_maps``: the items whose map held
        a NaN or an infinity, or was flat (scored as misses).

    Raises:
        ValueError: no items, not as many ``gts`` as ``heatmaps`` or a map of the wrong shape
            (e.g. one ``[h, w]`` map given as ``heatmaps``: its rows are not maps).
    """
    items = [score_item(h, g) for h, g in zip(heatmaps, gts, strict=True)]
    if not items:
        raise ValueError("no items to score")
    res = success_metrics([it["ciou"] for it in items])
    adaptive = success_metrics([it["ciou_adaptive"] for it in items])
    res["pointing"] = float(np.mean([it["pointing"] for it in items]))
    res["ciou_adaptive@0.5"] = adaptive["ciou@0.5"]
    res["auc_adaptive"] = adaptive["auc"]
    res["n"] = len(items)
    res["nonfinite_maps"] = sum(1 for it in items if it.get("nonfinite"))
    res["flat_maps"] = sum(1 for it in items if it.get("flat"))
    return res


def centre_prior(sigma: float = 0.25) -> np.ndarray:
    """Baseline heatmap ``[224, 224]``: an isotropic Gaussian at the centre, ``sigma`` in
    frame widths."""
    c = (np.arange(SIZE) + 0.5) / SIZE - 0.5
    return np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * sigma**2))


def random_maps(n: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Baseline heatmaps ``[n, h, w]`` uniform in [0, 1) (then resized like a model's map).

    Args:
        n: number of maps.
        shape: ``(h, w)``, e.g. the model's map resolution.
        seed: seed of the draw.
    """
    return np.random.default_rng(seed).random((n, *shape))
