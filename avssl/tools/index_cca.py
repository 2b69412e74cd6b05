"""Cross-modal search for methods whose towers share no space (``l3``): a CCA of the index.

``evaluate.py retrieval`` compares an ``l3`` sound with an ``l3`` picture in a CCA space fitted
on training pairs (the "L3 + CCA" baseline of Objects that Sound,
https://arxiv.org/abs/1712.06651; :mod:`avssl.eval.cca`). An index has its own pairs, with no
training data or labels needed: the audio and the visual window of one video at one time. Every
``avssl index`` run on such a model fits the CCA on those pairs anew (the fit takes under a
second for thousands of pairs, against minutes of embedding) and stores, beside the windows:

- ``audio_cca`` float16 ``[Na, k]`` and ``visual_cca`` float16 ``[Nv, k]``: every window in the
  CCA space, unit length, searched as the plain windows are (brute force or ``--approx``);
- ``cca_audio_mean`` ``[Da]``, ``cca_audio_proj`` ``[Da, k]`` and the two ``cca_visual_*``, float32:
  the map of a query's pooled embedding into that space (:meth:`FittedCCA.linear`);
- ``meta.json``'s ``cca``: ``{"pairs": M, "fit_pairs": F, "components": k, "ridge": r}`` (``k``
  0 and no tensors when the index holds fewer than 2 pairs: stills and sound files alone).

At most :data:`MAX_FIT_PAIRS` pairs, evenly spaced over the index, are fitted: 512 dimensions
need far fewer, and the fit's memory grows with them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avssl.errors import AvsslError
from avssl.eval.cca import DEFAULT_COMPONENTS, DEFAULT_RIDGE, fit_cca
from avssl.tools.index import MODALITIES, STORE_DTYPE, Index, drop_cca

MAX_FIT_PAIRS = 100_000
CHUNK = 65_536  # windows mapped at a time (float32 copies of one chunk only)


def window_pairs(index: Index) -> tuple[torch.Tensor, torch.Tensor]:
    """The audio and visual rows of the same file at the same time.

    ``avssl index`` centres both sides of a file on the same grid (the audio may end earlier
    or later than the picture), so equal times are equal float32 values.

    Returns:
        ``(audio_rows, visual_rows)``: long ``[M]`` each, row ``i`` of one the pair of row ``i``
        of the other, in the order of the audio rows.
    """

    def keys(m: str) -> np.ndarray:
        t = index.tensors[f"{m}_time"].float().contiguous()
        bits = t.view(torch.int32).long() & 0xFFFFFFFF  # NaN (a still) has no audio to meet
        return ((index.tensors[f"{m}_file"] << 32) | bits).numpy()

    _, ra, rv = np.intersect1d(
        keys("audio"), keys("visual"), assume_unique=True, return_indices=True
    )
    order = np.argsort(ra)
    return torch.from_numpy(ra[order]).long(), torch.from_numpy(rv[order]).long()


def fit_index_cca(
    index: Index, n_components: int = DEFAULT_COMPONENTS, ridge: float = DEFAULT_RIDGE
) -> dict:
    """Fit the CCA of ``index``'s window pairs and store it (see the module docstring).

    Args:
        index: a loaded or updated :class:`~avssl.tools.index.Index` (changed in place).
        n_components: wanted CCA dimensions (capped by the pairs and ranks).
        ridge: relative ridge of each side's covariance (:func:`avssl.eval.cca.fit_cca`).

    Returns:
        the ``meta["cca"]`` record.
    """
    drop_cca(index)
    rows_a, rows_v = window_pairs(index)
    m = int(rows_a.numel())
    if m < 2:
        index.meta["cca"] = {"pairs": m, "fit_pairs": m, "components": 0, "ridge": ridge}
        return index.meta["cca"]
    if m > MAX_FIT_PAIRS:
        keep = torch.linspace(0, m - 1, MAX_FIT_PAIRS, dtype=torch.float64).round().long()
        rows_a, rows_v = rows_a[keep], rows_v[keep]
    a, v = index.tensors["audio"][rows_a].float(), index.tensors["visual"][rows_v].float()
    cca = fit_cca(a, v, n_components, ridge)
    for side in MODALITIES:
        mean, proj = cca.linear(side)
        index.tensors[f"cca_{side}_mean"], index.tensors[f"cca_{side}_proj"] = mean, proj
        x = index.tensors[side]
        index.tensors[f"{side}_cca"] = torch.cat(
            [_map(x[i : i + CHUNK], mean, proj) for i in range(0, x.shape[0], CHUNK)]
            or [torch.zeros(0, proj.shape[1], dtype=STORE_DTYPE)]
        )
    k = len(cca.correlations)
    fit = int(rows_a.numel())
    index.meta["cca"] = {"pairs": m, "fit_pairs": fit, "components": k, "ridge": ridge}
    return index.meta["cca"]


def _map(
    x: torch.Tensor, mean: torch.Tensor, proj: torch.Tensor, dtype=STORE_DTYPE
) -> torch.Tensor:
    """Rows ``[N, D]`` -> unit-length CCA variates ``[N, k]`` (stored precision by default)."""
    return F.normalize((x.float() - mean) @ proj, dim=1).to(dtype)


def check_cca(index: Index, update: str) -> dict:
    """``index``'s ``meta["cca"]``, checked to map queries across modalities.

    Args:
        index: an index of an ``l3`` model.
        update: the command that fits the CCA, for the message of an index without one.

    Raises:
        AvsslError: the index holds no CCA (made before it was stored, or damaged), or too few
            pairs to fit one.
    """
    meta = index.meta.get("cca")
    if not isinstance(meta, dict):
        raise AvsslError(
            f"{index.path}: holds no CCA of its audio-visual window pairs, through which a model "
            f"without a shared space searches across modalities (made by an older avssl); run "
            f"{update} once to add it"
        )
    damaged = _record_error(meta, index.tensors)
    if damaged:
        raise AvsslError(f"{index.path / 'meta.json'}: damaged index metadata (cca: {damaged})")
    if meta["components"] < 1:
        n = meta["pairs"]
        raise AvsslError(
            f"{index.path}: holds {n} audio-visual window pair{'s' * (n != 1)} (a video's sound "
            "and picture at one time); a search across modalities goes through a CCA fitted on "
            "them and needs at least 2: index videos with sound, or search within one modality "
            "(--target audio for a sound, --target visual for a picture)"
        )
    return meta


def _record_error(meta: dict, tensors: dict) -> str | None:
    """What is wrong with a ``meta["cca"]`` record against the index's tensors, or None (the
    tensors' own layout is checked on load: :func:`avssl.tools.index.read_tensors`)."""
    for key in ("pairs", "fit_pairs", "components"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{key} {value!r} is not a count"
    ridge = meta.get("ridge")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)):
        return f"ridge {ridge!r} is not a number"
    k = meta["components"]
    if k == 0:
        return None
    if "cca_audio_proj" not in tensors:
        return f"records {k} components, its tensor file holds no CCA"
    if tensors["cca_audio_proj"].shape[1] != k:
        return f"records {k} components, its tensors hold {tensors['cca_audio_proj'].shape[1]}"
    return None


def cca_query(index: Index, query: torch.Tensor, modality: str) -> torch.Tensor:
    """A pooled ``modality`` query ``[D]`` in the CCA space of ``index`` (:func:`check_cca`
    passed), unit length, float32 ``[k]``; search it against the ``<other side>_cca`` rows."""
    mean, proj = index.tensors[f"cca_{modality}_mean"], index.tensors[f"cca_{modality}_proj"]
    return _map(query[None], mean, proj, torch.float32)[0]
