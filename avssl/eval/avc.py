"""The pretext task itself: audio-visual correspondence accuracy on held-out pairs (the AVC
task of Look, Listen and Learn, https://arxiv.org/abs/1705.08168, with its hard negatives from
the same clip at another time as in https://arxiv.org/abs/1807.00230).

Every held-out item gives three pairs: the positive, an easy negative (audio of another clip)
and a hard negative (audio of the same clip shifted by at least ``min_shift``). With a decision
threshold ``thr`` on the model's score (``score >= thr`` means match):

* ``accuracy_easy`` = mean(positive accuracy, easy-negative accuracy)   (balanced)
* ``accuracy_hard`` = mean(positive accuracy, hard-negative accuracy)   (balanced)
* ``accuracy`` = mean(accuracy_easy, accuracy_hard); just ``accuracy_easy`` when no clip is long
  enough for a hard negative (e.g. AV-Digits' 1-s clips), so checkpoint selection still works

Two-way heads (L3-Net, AVE-Net, AVOL-Net) use their own rule (threshold 0 on the logit). A
contrastive model has no natural threshold: it is chosen on the *validation* split as the one
that maximises ``accuracy`` there, stored in the checkpoint, and reused unchanged on test.
``evaluate.py avc --recalibrate SPLIT`` chooses it anew by the same rule on that split of the
checkpoint's own data, and ``--cohort N`` first centres every score by the sound's cohort offset
(:mod:`avssl.eval.score_norm`; the threshold is then recalibrated, on val unless told).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from avssl.eval.arrays import as_array
from avssl.eval.score_norm import code_offsets
from avssl.train.runtime import autocast

PAIRS = (("pos", "audio"), ("easy", "audio_easy"), ("hard", "audio_hard"))

__all__ = ["avc_metrics", "calibrate_threshold", "score_pairs"]


def _score_arrays(scores: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pos, easy, hard)`` of :func:`score_pairs`-like ``scores`` as 1-D float arrays, ``hard``
    kept where ``hard_valid``.

    Raises:
        ValueError: a key missing, a score array not 1-D or empty (pos, easy), or ``hard_valid``
            not bool of ``hard``'s shape (0/1 integers index rows instead of masking them, a
            wrong number without an error).
    """
    missing = [k for k in ("pos", "easy", "hard", "hard_valid") if k not in scores]
    if missing:
        raise ValueError(f"scores lacks {', '.join(missing)} (see avssl.eval.avc.score_pairs)")
    arrays = {}
    for key in ("pos", "easy", "hard", "hard_valid"):
        arrays[key] = arr = as_array(scores[key])
        if arr.ndim != 1:
            raise ValueError(f"scores[{key!r}] must be 1-D [M], got shape {list(arr.shape)}")
    for key in ("pos", "easy"):
        if not len(arrays[key]):
            raise ValueError(f"scores[{key!r}] is empty: no items to score")
    valid = arrays["hard_valid"]
    if valid.dtype != bool or valid.shape != arrays["hard"].shape:
        raise ValueError(
            "scores['hard_valid'] must be bool of scores['hard']'s shape "
            f"{list(arrays['hard'].shape)}, got {valid.dtype} {list(valid.shape)}"
        )
    return arrays["pos"], arrays["easy"], arrays["hard"][valid]


@torch.no_grad()
def score_pairs(
    model, dataset, device, precision: str = "fp32", batch_size: int = 64,
    cohort: torch.Tensor | None = None, cohort_top: int = 200,
) -> dict:  # fmt: skip
    """Scores of every item's positive, easy and hard pair.

    Args:
        model: an :class:`~avssl.models.base.AVModel` (its ``visual_codes``, ``audio_codes``
            and ``pair_scores``).
        dataset: ``M`` items of :class:`~avssl.data.dataset.AVPairDataset` (``frames`` uint8
            ``[3, S, S]``, ``audio``, ``audio_easy``, ``audio_hard``, ``hard_valid``).
        device: the model's :class:`torch.device`.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: items per forward pass.
        cohort: optional ``[F, ...]`` :func:`~avssl.eval.score_norm.cohort_codes` of F training
            pictures; each score is then centred by its sound's
            :func:`~avssl.eval.score_norm.code_offsets`.
        cohort_top: how many best cohort scores make a sound's offset.

    Returns:
        dict of numpy arrays ``pos``, ``easy``, ``hard`` (float ``[M]``) and ``hard_valid``
        (bool ``[M]``; False where the clip is too short for a shifted negative: its ``hard``
        is NaN, and a batch without any valid one skips that audio pass).
    """
    model.eval()
    out = {"pos": [], "easy": [], "hard": [], "hard_valid": []}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for batch in loader:
        frames = batch["frames"].to(device).float().div_(255)
        valid = batch["hard_valid"]
        with autocast(precision, device):
            visual = model.visual_codes(frames)  # once for the sounds of each frame
            for key, audio_key in PAIRS:
                if key == "hard" and not valid.any():  # no shifted sound in this batch: not scored
                    out[key].append(torch.full(valid.shape, float("nan")))
                    continue
                audio = model.audio_codes(batch[audio_key].to(device))
                score = model.pair_scores(visual, audio).float()
                if cohort is not None:
                    score = score - code_offsets(model, audio, cohort, cohort_top)
                out[key].append(score.cpu())
        out["hard_valid"].append(valid)
    res = {k: torch.cat(v).numpy() for k, v in out.items()}
    res["hard"][~res["hard_valid"]] = np.nan  # a clip too short for a shift has no hard pair
    return res


def avc_metrics(scores: dict, threshold: float) -> dict:
    """Balanced accuracies (see the module docstring) and threshold-free ROC-AUCs.

    Args:
        scores: :func:`score_pairs` output (``pos``, ``easy``, ``hard`` float ``[M]``,
            ``hard_valid`` bool ``[M]``).
        threshold: decision threshold; ``score >= threshold`` means "match".

    Returns:
        ``accuracy``, ``accuracy_easy``, ``accuracy_hard``, ``accuracy_positive``,
        ``roc_auc_easy``, ``roc_auc_hard`` (the hard ones NaN when no item has a hard pair),
        ``threshold`` and ``n`` (the number of items).

    Raises:
        ValueError: ``scores`` is malformed (a key missing, arrays not 1-D, no items,
            ``hard_valid`` not a bool mask of ``hard``); numpy arrays or tensors are accepted.
    """
    pos, easy, hard = _score_arrays(scores)
    acc_pos = float(np.mean(pos >= threshold))
    acc_easy = float(np.mean(easy < threshold))
    acc_hard = float(np.mean(hard < threshold)) if len(hard) else float("nan")
    res = {
        "accuracy_easy": (acc_pos + acc_easy) / 2,
        "accuracy_hard": (acc_pos + acc_hard) / 2,
        "accuracy_positive": acc_pos,
        "roc_auc_easy": _auc(pos, easy),
        "roc_auc_hard": _auc(pos, hard) if len(hard) else float("nan"),
        "threshold": float(threshold),
        "n": int(len(pos)),
    }
    res["accuracy"] = (
        (res["accuracy_easy"] + res["accuracy_hard"]) / 2 if len(hard) else res["accuracy_easy"]
    )
    return res


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(y, np.r_[pos, neg]))


def calibrate_threshold(scores: dict) -> float:
    """The threshold maximising ``accuracy`` on these (validation) scores.

    Candidates are midpoints between consecutive distinct scores, so the choice is exact.

    Args:
        scores: as :func:`avc_metrics` takes them.

    Raises:
        ValueError: ``scores`` is malformed (as :func:`avc_metrics`).
    """
    pos, easy, hard = (np.sort(x) for x in _score_arrays(scores))
    allv = np.unique(np.r_[pos, easy, hard])
    if len(allv) == 1:
        return float(allv[0])
    cands = np.r_[allv[0] - 1, (allv[1:] + allv[:-1]) / 2]

    def frac_below(sorted_x, c):
        return np.searchsorted(sorted_x, c, side="left") / max(len(sorted_x), 1)

    acc_pos = 1 - frac_below(pos, cands)
    acc = (acc_pos + frac_below(easy, cands)) / 2
    if len(hard):
        acc = (acc + (acc_pos + frac_below(hard, cands)) / 2) / 2
    return float(cands[int(np.argmax(acc))])
