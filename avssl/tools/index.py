"""A cross-modal search index: per-window audio and visual embeddings of a media collection.

On disk an index is a directory holding

- ``meta.json``: format, the checkpoint it was built with (path and a SHA-256 of its weights),
  the model config, the hop, the source inputs and one entry per file (path, kind, size,
  mtime, duration) in file-id order;
- ``embeddings-<token>.pt``: a dict of tensors only (loaded with ``weights_only=True``): ``audio``
  float16 ``[Na, D]``, ``audio_file`` int64 ``[Na]``, ``audio_time`` float32 ``[Na]`` and the same
  three for ``visual``; times are window centres in s (NaN for a still image); an index of a model
  without a shared space (l3) also holds a CCA of its window pairs (:mod:`avssl.tools.index_cca`).

Embeddings are the model's pooled ``embed_audio`` / ``embed_visual`` outputs, L2-normalised
(maps of spatial models are not stored). Writes are atomic: a new tensor file under a fresh name,
then ``meta.json`` replaced with ``os.replace``, then the old tensor file removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from avssl.atomic_write import replacing, write_text
from avssl.errors import AvsslError
from avssl.model_inputs import input_changes, input_settings
from avssl.torch_file import TorchFileError, load_torch_file

FORMAT = "avssl-index-v1"
MODALITIES = ("audio", "visual")
# float16 halves the index on disk and the memory a query streams through (the search cost);
# its ~1e-3 rounding of unit vectors is far below score differences that matter.
STORE_DTYPE = torch.float16
TENSOR_NAME = re.compile(r"embeddings-[0-9a-f]{12}\.pt")
_LOAD_REASONS = {  # TorchFileError.kind -> the reason an index's tensor file is refused with
    "unreadable": "cannot read the index tensors ({})",
    "empty": "empty index tensor file (truncated?)",
    "not_torch": "not a readable tensor file (no PyTorch zip header)",
    "unsafe": "not a readable tensor file (holds objects other than tensors: could run code)",
    "damaged": "not a readable tensor file (truncated?): {}",
}


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def empty_tensors(dim: int) -> dict[str, torch.Tensor]:
    """The tensors of an index with no windows: ``[0, dim]`` embeddings per modality, with
    empty ``_file`` and ``_time`` tensors (see the module docstring)."""
    out = {}
    for m in MODALITIES:
        out[m] = torch.zeros(0, dim, dtype=STORE_DTYPE)
        out[f"{m}_file"] = torch.zeros(0, dtype=torch.long)
        out[f"{m}_time"] = torch.zeros(0)
    return out


@dataclass
class Index:
    """An index in memory. ``files[i]`` describes file id ``i``; see the module docstring."""

    path: Path
    meta: dict
    files: list[dict] = field(default_factory=list)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def count(self, modality: str) -> int:
        """Windows indexed for ``modality`` (``audio`` or ``visual``): its embeddings' rows."""
        return int(self.tensors[modality].shape[0])

    def check_checkpoint(self, sha: str, ckpt_path: str, cfg) -> None:
        """Refuse a checkpoint other than the one the index was built with: its embeddings
        would not be comparable with the index's. So is one with the same weights whose config
        reads them otherwise (:func:`~avssl.model_inputs.input_settings` of ``cfg``: another
        front end or window; only keys ``meta.json``'s config records are compared). The
        message says how to go on (an index cannot be updated by another checkpoint:
        ``--rebuild`` embeds everything again)."""
        built = self.meta["checkpoint"]
        rebuild = f"avssl index --checkpoint CKPT --out {self.path} --rebuild"
        if built["sha256"] != sha:
            raise AvsslError(
                f"{self.path}: built with checkpoint {built['path']} (state sha256 "
                f"{built['sha256'][:12]}), not {ckpt_path} (state sha256 {sha[:12]}), whose "
                "embeddings would not match; pass the checkpoint it was built with, or rebuild "
                f"it with this one: {rebuild}"
            )
        recorded = self.meta.get("config")
        changes = []
        if isinstance(recorded, dict):
            changes = input_changes(input_settings(recorded), input_settings(cfg))
        if changes:
            raise AvsslError(
                f"{self.path}: built with checkpoint {built['path']}, whose weights {ckpt_path} "
                f"reads with other settings ({', '.join(changes)}), so its embeddings would not "
                f"match; pass the checkpoint it was built with, or rebuild it with this one: "
                f"{rebuild}"
            )


def load_meta(path: str | os.PathLike) -> dict:
    """The parsed ``meta.json`` of the index directory ``path`` (tensors not read).

    Raises:
        AvsslError: no ``meta.json``, not this :data:`FORMAT`, or damaged.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        why = "not an avssl index (no meta.json)" if path.is_dir() else "not an index folder"
        raise AvsslError(f"{path}: {why if path.exists() else 'no such index folder'}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AvsslError(f"{meta_path}: damaged index metadata ({err})") from None
    if not isinstance(meta, dict):
        raise AvsslError(f"{meta_path}: damaged index metadata (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise AvsslError(f"{path}: not an avssl index (format {meta.get('format')!r})")
    if not isinstance(meta.get("tensors"), str) or not isinstance(meta.get("files"), list):
        raise AvsslError(f"{meta_path}: damaged index metadata (no 'tensors' or 'files')")
    built = meta.get("checkpoint")
    if not (
        isinstance(built, dict) and all(isinstance(built.get(k), str) for k in ("sha256", "path"))
    ):
        raise AvsslError(f"{meta_path}: damaged index metadata (no 'checkpoint' path and sha256)")
    return meta


def own_tensor_file(name: object) -> bool:
    """Whether ``name`` is a tensor file name :func:`save_index` writes (a bare
    ``embeddings-<12 hex>.pt``, inside the index directory): the only kind it ever deletes."""
    return isinstance(name, str) and TENSOR_NAME.fullmatch(name) is not None


def load_index(path: str | os.PathLike, mmap: bool = True) -> Index:
    """Load an index directory.

    Args:
        path: the index directory.
        mmap: memory-map the tensor file (fast open; pages load on first use).

    Raises:
        AvsslError: missing, not an index, or damaged (:func:`read_tensors`).
    """
    path = Path(path)
    meta = load_meta(path)
    files = meta.pop("files")
    return Index(path, meta, files, read_tensors(path / meta["tensors"], len(files), mmap))


def read_tensors(tpath: Path, n_files: int, mmap: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of an index's tensor file, checked against the module docstring's layout:
    ``audio`` ``[Na, D]``, ``audio_file`` and ``audio_time`` ``[Na]``, the same for ``visual``.

    Args:
        tpath: the ``embeddings-<token>.pt`` file.
        n_files: files the index's ``meta.json`` lists (the file ids must be below it).
        mmap: memory-map the file.

    Raises:
        AvsslError: ``TPATH: REASON``: unreadable, empty, not a tensor file torch can read
            (garbage; truncated, with torch's first line), or not the index's tensors.
    """
    try:
        tensors = load_torch_file(tpath, map_location="cpu", mmap=mmap)
    except TorchFileError as err:
        raise AvsslError(f"{tpath}: {_LOAD_REASONS[err.kind].format(err.detail)}") from None
    problem = _layout_error(tensors, n_files)
    if problem:
        raise AvsslError(f"{tpath}: not an avssl index tensor file ({problem})")
    return tensors


def _layout_error(tensors, n_files: int) -> str | None:
    """What is wrong with loaded index tensors (see the module docstring), or None."""
    if not isinstance(tensors, dict):
        return f"holds a {type(tensors).__name__}, not a dict of tensors"
    for m in MODALITIES:
        names = (m, f"{m}_file", f"{m}_time")
        missing = [n for n in names if not isinstance(tensors.get(n), torch.Tensor)]
        if missing:
            return f"no {missing[0]!r} tensor"
        x, ids, times = (tensors[n] for n in names)
        if x.dim() != 2 or not x.is_floating_point():
            return f"{m!r} is not a 2-d float tensor"
        if ids.shape != (x.shape[0],) or ids.dtype != torch.long:
            return f"{m}_file is not {x.shape[0]} int64 file ids"
        if times.shape != (x.shape[0],) or not times.is_floating_point():
            return f"{m}_time is not {x.shape[0]} float times"
        if ids.numel() and not (int(ids.min()) >= 0 and int(ids.max()) < n_files):
            return f"{m}_file ids outside the {n_files} files of meta.json"
    return _cca_layout_error(tensors)


def _cca_layout_error(tensors: dict) -> str | None:
    """What is wrong with the CCA tensors an l3 index holds (:mod:`avssl.tools.index_cca`)."""
    if not any("cca" in name for name in tensors):
        return None
    for m in MODALITIES:
        names = (f"{m}_cca", f"cca_{m}_mean", f"cca_{m}_proj")
        missing = [n for n in names if not isinstance(tensors.get(n), torch.Tensor)]
        if missing:
            return f"no {missing[0]!r} tensor"
        x, mean, proj = (tensors[n] for n in names)
        if not all(t.is_floating_point() for t in (x, mean, proj)):
            return f"{m}_cca, cca_{m}_mean or cca_{m}_proj is not a float tensor"
        d = tensors[m].shape[1]
        if mean.shape != (d,) or proj.dim() != 2 or proj.shape[0] != d:
            return f"cca_{m}_mean / cca_{m}_proj do not map {d}-d {m} embeddings"
        if x.shape != (tensors[m].shape[0], proj.shape[1]):
            return f"{m}_cca is not one {proj.shape[1]}-d row per {m} window"
    if tensors["cca_audio_proj"].shape[1] != tensors["cca_visual_proj"].shape[1]:
        return "cca_audio_proj and cca_visual_proj map to spaces of different widths"
    return None


def drop_cca(index: Index) -> None:
    """Forget a fitted CCA (its tensors and ``meta["cca"]``): the windows it mapped changed."""
    for name in [n for n in index.tensors if "cca" in n]:
        del index.tensors[name]
    index.meta.pop("cca", None)


def save_index(index: Index) -> None:
    """Write ``index`` atomically (fresh tensor file, then ``meta.json`` via ``os.replace``); a
    failed write leaves the folder as it was (the new tensor file goes)."""
    path = index.path
    path.mkdir(parents=True, exist_ok=True)
    # never delete a file the index did not write (a foreign or edited meta.json may name any)
    old = path / index.meta["tensors"] if own_tensor_file(index.meta.get("tensors")) else None
    name = f"embeddings-{uuid.uuid4().hex[:12]}.pt"
    with replacing(path / name) as tmp:
        torch.save({k: v.contiguous() for k, v in index.tensors.items()}, tmp)
    meta = {**index.meta, "tensors": name, "files": index.files}
    try:
        # ASCII escapes: a file name that is not UTF-8 (a lone surrogate) round-trips through
        # json.loads, where UTF-8 text could not be written at all
        write_text(path / "meta.json", json.dumps(meta, indent=1))
    except BaseException:
        (path / name).unlink(missing_ok=True)  # an orphan would make the folder not an index
        raise
    index.meta["tensors"] = name
    if old is not None and old.name != name and old.is_file():
        old.unlink()


def keep_files(index: Index, keep: list[bool]) -> None:
    """Drop the files whose ``keep`` flag is False (and their windows), renumbering file ids."""
    drop_cca(index)
    old_to_new = torch.full((len(index.files) + 1,), -1, dtype=torch.long)
    ids = [i for i, k in enumerate(keep) if k]
    old_to_new[torch.tensor(ids, dtype=torch.long)] = torch.arange(len(ids))
    for m in MODALITIES:
        new_ids = old_to_new[index.tensors[f"{m}_file"]]
        sel = new_ids >= 0
        index.tensors[m] = index.tensors[m][sel]
        index.tensors[f"{m}_time"] = index.tensors[f"{m}_time"][sel]
        index.tensors[f"{m}_file"] = new_ids[sel]
    index.files = [index.files[i] for i in ids]


def add_files(index: Index, items: list) -> None:
    """Append ``(entry, FileEmbeddings)`` pairs (see :mod:`avssl.tools.index_media`).

    A file's ``audio`` ``[Wa, Da]`` and ``visual`` ``[Wv, Dv]`` rows join the index's ``[Na, Da]``
    and ``[Nv, Dv]``; a side the file lacks (``W = 0``) may come with any width, as the two
    widths differ for some models (l3: 384-d sound, 128-d pictures).
    """
    drop_cca(index)
    for m in MODALITIES:
        width = index.tensors[m].shape[1]
        xs, ts, ids = [index.tensors[m]], [index.tensors[f"{m}_time"]], [index.tensors[f"{m}_file"]]
        for j, (_, emb) in enumerate(items):
            x = getattr(emb, m)
            if x.shape[0] != getattr(emb, f"{m}_time").shape[0]:
                raise RuntimeError(f"{m} embeddings and times of unequal length: {items[j][0]}")
            if x.shape[0] == 0:
                x = x.reshape(0, width)
            elif x.shape[1] != width:
                raise RuntimeError(f"{m} embeddings {x.shape[1]}-d, the index's {width}-d")
            xs.append(x.to(STORE_DTYPE))
            ts.append(getattr(emb, f"{m}_time").float())
            ids.append(torch.full((x.shape[0],), len(index.files) + j, dtype=torch.long))
        index.tensors[m] = torch.cat(xs)
        index.tensors[f"{m}_time"] = torch.cat(ts)
        index.tensors[f"{m}_file"] = torch.cat(ids)
    index.files.extend(entry for entry, _ in items)
