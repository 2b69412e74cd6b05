"""Decoded-clip shard cache: WebDataset-style tar shards of frames, audio and manifest rows.

Decoding video costs far more than a correspondence model's step, so large datasets are decoded
once (``avssl cache``) and training reads the shards. A cache folder holds::

    shard-000000.tar   per sample: <key>.frames.npy  uint8 [T, H, W, 3]
                                   <key>.audio.npy   float32 [N], mono
                                   <key>.json        the manifest row
    shard-000000.json  the keys, ids, splits, [T, N] lengths and row digests of that shard's
                       samples (committed just before the tar)
    index.json         decode settings, every shard with its samples, the clips skipped, the
                       seed of the order rows were written in, the shard limits
                       (``shard_limits``: ``shard_size``, ``shard_mb``)

The decode settings record the train split's ``data.frame_fit`` as ``train_fit`` when it is not
``squash`` (a cache without it, as every one built before the key existed, was squashed; other
splits always are): a cache of one fit is refused to a run asking for the other.

The layout is WebDataset's (https://github.com/webdataset/webdataset: members grouped by the
key before the first dot). Frames and audio are kept exactly as
:func:`avssl.data.media.read_clip` returns them (raw ``.npy``, no JPEG or int16 quantisation),
so a cached clip gives bit-identical items to decoding the media. This module names and reads
the shards; :mod:`avssl.data.shard_writer` writes them and :mod:`avssl.data.shard_checks`
checks them against their sidecars and the manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from avssl.config import DataConfig
from avssl.data.frame_fit import SQUASH, split_fit
from avssl.data.manifest import Row
from avssl.data.shard_entries import check_index
from avssl.errors import AvsslError, MediaError

FORMAT = 1
INDEX = "index.json"


def shard_name(i: int) -> str:
    """File name of shard number ``i`` (``shard-000000.tar`` for 0)."""
    return f"shard-{i:06d}.tar"


def split_size(data: DataConfig, split: str, train: bool | None = None) -> int:
    """Side length frames of ``split`` are decoded at (as :func:`avssl.data.source.load_split`).

    ``train`` defaults to ``split == "train"``: training crops from ``load_size`` frames when it
    augments; everything else reads ``frame_size`` frames.

    Args:
        data: data settings (``load_size``, ``frame_size``, ``augment``).
        split: ``train``, ``val`` or ``test``.
        train: whether the split is read for training; ``None``: ``split == "train"``.
    """
    train = split == "train" if train is None else train
    return data.load_size if (train and data.augment) else data.frame_size


def decode_settings(data: DataConfig) -> dict:
    """What a cache's samples depend on; a reader refuses a cache built with other values.

    ``train_fit`` is recorded only when it is not ``squash``: a squashed cache's settings are
    those of a cache built before ``data.frame_fit`` existed (see :func:`train_fit`).
    """
    fit = split_fit(data, "train")
    return {
        "format": FORMAT,
        "fps": float(data.fps),
        "sample_rate": int(data.sample_rate),
        "train_size": split_size(data, "train"),
        "eval_size": data.frame_size,
        **({"train_fit": fit} if fit != SQUASH else {}),
    }


def train_fit(settings: dict) -> str:
    """The fit a cache's train split was decoded with: ``squash`` when its settings do not
    record one (every cache built before ``data.frame_fit`` existed)."""
    return settings.get("train_fit", SQUASH)


def sample_key(row_id: str) -> str:
    """A readable, dot-free WebDataset key that is unique per row id."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", row_id)[:40]
    return f"{safe}-{hashlib.sha1(row_id.encode()).hexdigest()[:10]}"


def damaged(path: Path, got: int, n: int) -> AvsslError:
    """The error for a shard that holds other samples than its sidecar lists."""
    return AvsslError(
        f"{path}: damaged or truncated shard ({got} of its {n} samples readable); "
        "rebuild the cache into a new folder"
    )


def iter_shard(path: Path, keys: list[str] | None = None) -> Iterator[dict]:
    """Samples of one shard in order.

    Args:
        path: the shard's tar file.
        keys: the sample keys its sidecar lists (default: read from the sidecar); a shard
            holding other samples (cut short, or zeros where its tail should be) is an error,
            not a shorter shard.

    Yields:
        ``{"key", "row": dict, "frames": uint8 ndarray [T, H, W, 3], "audio": float32 ndarray
        [N]}``.

    Raises:
        AvsslError: the shard or its sidecar is unreadable, a sample lacks a member or the
            samples are not the listed ones.
    """
    if keys is None:
        sidecar = Path(path).with_suffix(".json")
        try:
            keys = json.loads(sidecar.read_text(encoding="utf-8"))["keys"]
        except (OSError, ValueError, KeyError, TypeError):
            raise AvsslError(f"{sidecar}: missing or unreadable shard sidecar") from None
    n = 0
    for sample in _iter_samples(path):
        if n >= len(keys) or sample["key"] != keys[n]:
            raise damaged(path, n, len(keys))
        n += 1
        yield sample
    if n != len(keys):
        raise damaged(path, n, len(keys))


def _iter_samples(path: Path) -> Iterator[dict]:
    group: dict[str, bytes] = {}
    current = None
    try:
        # a file, not a stream ("r|"): stream mode reads members in 10 KB blocks it joins,
        # which made reading a cache 4x slower than these direct reads
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if key != current and group:
                    yield _sample(path, current, group)
                    group = {}
                current = key
                group[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError) as err:
        raise AvsslError(f"{path}: unreadable shard ({err})") from None
    if group:
        yield _sample(path, current, group)


def _sample(path: Path, key: str, group: dict[str, bytes]) -> dict:
    missing = {"frames.npy", "audio.npy", "json"} - set(group)
    if missing:
        raise AvsslError(f"{path}: sample {key!r} lacks {', '.join(sorted(missing))}")
    return {
        "key": key,
        "row": json.loads(group["json"]),
        "frames": np.load(io.BytesIO(group["frames.npy"]), allow_pickle=False),
        "audio": np.load(io.BytesIO(group["audio.npy"]), allow_pickle=False),
    }


def read_index(cache: str | os.PathLike) -> dict:
    """The ``index.json`` of a finished cache.

    Raises:
        AvsslError: no index, a damaged one (:func:`~avssl.data.shard_entries.check_index`),
            an unfinished build or an unknown format.
    """
    path = Path(cache).expanduser() / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AvsslError(
            f"{path}: no shard cache index (build one with avssl cache; an evaluation can read "
            "the media instead with --data MANIFEST)"
        ) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AvsslError(f"{path}: unreadable shard cache index ({err})") from None
    check_index(path, index)
    if not index.get("complete"):
        raise AvsslError(f"{path}: the cache build did not finish (rerun avssl cache to resume)")
    if index.get("settings", {}).get("format") != FORMAT:
        raise AvsslError(f"{path}: unknown shard cache format (rebuild it with avssl cache)")
    return index


def check_settings(index: dict, cache, data: DataConfig, split: str, size: int) -> None:
    """Refuse a cache whose decode settings differ from what ``data`` asks for ``split``.

    Args:
        index: the cache's ``index.json`` (:func:`read_index`).
        cache: the cache folder, named in the error.
        data: data settings (``fps``, ``sample_rate``, ``frame_fit``).
        split: the split to read; ``train`` is checked against the cache's training frame size
            and fit, any other against its evaluation size (always squashed).
        size: frame side length the reader needs (see :func:`split_size`).
    """
    s = index["settings"]
    train = split == "train"
    have = (s["fps"], s["sample_rate"], s["train_size"] if train else s["eval_size"])
    have += (train_fit(s) if train else SQUASH,)
    need = (float(data.fps), int(data.sample_rate), size, split_fit(data, split))
    if have != need:
        raise AvsslError(
            f"{cache}: shard cache built with fps={have[0]:g}, sample_rate={have[1]}, "
            f"size={have[2]}, frame_fit={have[3]} for split {split!r}, but the config needs "
            f"fps={need[0]:g}, sample_rate={need[1]}, size={need[2]}, frame_fit={need[3]} "
            "(rebuild it with avssl cache)"
        )


def changed_since_cached(row_id: str, index: dict) -> str:
    """Why a cached row is not served: the manifest's row differs from the one cached, most
    often because the cache was built from another manifest (which the index names)."""
    built = f" (the cache was built from {index['manifest']})" if index.get("manifest") else ""
    return f"row {row_id!r} changed since it was cached{built}"


def cached_clips(cache, rows: list[Row], data: DataConfig, split: str, size: int):
    """A ClipStore loader serving ``rows`` from the cache instead of decoding media.

    Only the shards holding ``split`` are read. A row whose build was skipped gets the same
    error the build met; a row missing from the cache, or cached from a different manifest row,
    gets an error saying so.

    Args:
        cache: the cache folder.
        rows: the manifest rows to serve (rows of other splits are reported missing).
        data: data settings, checked against the cache's (see :func:`check_settings`).
        split: the split ``rows`` belong to.
        size: frame side length the reader needs (see :func:`split_size`).

    Returns:
        ``row -> (frames uint8 [T, H, W, 3], audio float32 [N]) | MediaError``.
    """
    index = read_index(cache)
    check_settings(index, cache, data, split, size)
    root = Path(cache).expanduser()
    wanted = {r.id: r for r in rows}
    found: dict[str, tuple[torch.Tensor, torch.Tensor] | MediaError] = {}
    for shard in index["shards"]:
        if split not in shard["splits"]:
            continue
        for sample in iter_shard(root / shard["name"], shard["keys"]):
            row = wanted.get(sample["row"]["id"])
            if row is None or sample["row"]["split"] != split:
                continue
            if sample["row"] != row.to_json():
                found[row.id] = MediaError(root, changed_since_cached(row.id, index))
            elif sample["frames"].shape[1:3] != (size, size):  # the index says otherwise
                raise AvsslError(
                    f"{root / shard['name']}: frames of {sample['frames'].shape[1]} px where "
                    f"the index records {size} (an edited index.json?); rebuild the cache"
                )
            else:
                found[row.id] = (
                    torch.from_numpy(sample["frames"]),
                    torch.from_numpy(sample["audio"]),
                )
    for item in index.get("skipped", []):
        found.setdefault(item["id"], MediaError(item["path"], item["reason"]))

    def load(row: Row):
        if row.id in found:
            return found[row.id]
        return MediaError(root, f"row {row.id!r} is not in the cache")

    return load
