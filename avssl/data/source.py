"""From a config to datasets: find (or build) the manifest, decode the splits, make pair sets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from avssl.config import Config, DataConfig
from avssl.data.dataset import AVPairDataset, ClipStore
from avssl.data.frame_fit import split_fit
from avssl.data.manifest import Row, read_manifest
from avssl.errors import AvsslError, ConfigError, ManifestError


def manifest_path(data: DataConfig, progress: bool = True, announce: bool = True) -> Path:
    """The manifest a data config points at; the synthetic world is built on first use.

    Args:
        data: ``data.root`` is a manifest file, a folder holding ``manifest.jsonl``, or None
            for the built-in synthetic world.
        progress: show generation progress.
        announce: say on stderr that an existing synthetic world is reused, and warn when
            ``data.cache`` was built from another manifest than ``data.root``'s.

    Raises:
        ManifestError: ``data.root`` holds no manifest.
        ConfigError: ``data.cache`` without ``data.root`` names a cache of another manifest.
        AvsslError: ``data.cache`` without ``data.root`` is no finished shard cache.
    """
    if data.root is None:
        from avssl.data.synthetic import ensure_world, world_dir

        if data.cache:  # before a world is built that the cache cannot serve
            _refuse_cache_of_another_manifest(data.cache, world_dir(data.synthetic))
        return Path(ensure_world(data.synthetic, progress=progress, announce=announce))
    root = Path(data.root).expanduser()
    path = root / "manifest.jsonl" if root.is_dir() else root
    if not path.is_file():
        raise ManifestError(
            f"{root}: no manifest found (expected a .jsonl file or a folder with manifest.jsonl)"
        )
    if data.cache and announce:
        _warn_cache_of_another_manifest(data.cache, path)
    return path


_WARNED: set[tuple[str, str]] = set()


def _warn_cache_of_another_manifest(cache: str, manifest: Path) -> None:
    """Warn when ``data.cache`` was built from another manifest file than ``manifest``.

    Rows are matched by their JSON, so a moved dataset is still served from its cache; but media
    paths are relative to the manifest's folder, so rows of a copy whose media differ (e.g.
    re-encoded) would be served the frames decoded from the first one's."""
    from avssl.data.shards import read_index

    try:  # a warning never fails a command: one that reads the cache reports it missing itself
        built = read_index(cache).get("manifest")
    except AvsslError:
        return
    pair = (str(cache), str(manifest.resolve()))
    if built and Path(built).expanduser().resolve() != manifest.resolve() and pair not in _WARNED:
        _WARNED.add(pair)  # once per process: a run reads the manifest's path several times
        print(
            f"warning: data.cache {cache} was built from {built}, not {manifest}: rows that "
            "match are served from the cache (rebuild it if this manifest's media differ)",
            file=sys.stderr,
        )


def _refuse_cache_of_another_manifest(cache: str, world: Path) -> None:
    """Refuse ``data.cache`` without ``data.root`` when the cache was not built from the synthetic
    world ``data.root`` would default to: it cannot serve that world's rows, and building the
    world first would take minutes before every clip failed."""
    from avssl.data.shards import read_index

    built = read_index(cache).get("manifest")
    if built and Path(built).expanduser().resolve() != (world / "manifest.jsonl").resolve():
        raise ConfigError(
            f"data.cache {cache} was built from {built}, but data.root is unset (the built-in "
            f"synthetic world): add --set data.root={built}"
        )


def class_names(rows: list[Row]) -> list[str]:
    """Sorted names of every first label in the manifest (stable across splits)."""
    return sorted({r.labels[0] for r in rows if r.labels})


def domain_names(rows: list[Row], split: str = "train") -> list[str]:
    """Sorted names of the ``domain`` fields of one split's rows.

    Args:
        rows: manifest rows (of any split).
        split: the split whose rows are read.
    """
    return sorted({r.domain for r in rows if r.split == split and r.domain is not None})


def resolve_domains(cfg: Config, progress: bool = True) -> None:
    """Fill ``cfg.loss.domains`` from the training split when the domain adversary is on and no
    domains are named (before the model is built, so checkpoints record them).

    Args:
        cfg: the full config; ``cfg.loss.domains`` is set in place.
        progress: show progress if the synthetic world has to be generated.

    Raises:
        ConfigError: the adversary is on with ``data.stream`` or on the synthetic world, or no
            domains are named and the training rows carry fewer than two.
    """
    if cfg.loss.domain_adversary > 0 and cfg.data.stream:
        raise ConfigError("loss.domain_adversary: not available with data.stream")
    if cfg.loss.domain_adversary <= 0 or cfg.loss.domains:
        return
    if cfg.data.root is None:
        raise ConfigError(
            "loss.domain_adversary: the built-in synthetic world has no 'domain' fields; set "
            "data.root to a manifest whose training rows carry them"
        )
    manifest = manifest_path(cfg.data, progress)
    found = domain_names(read_manifest(manifest))
    if len(found) < 2:
        raise ConfigError(
            f"{manifest}: loss.domain_adversary needs at least two domains among the training "
            f"rows' 'domain' fields (found {len(found)})"
        )
    cfg.loss.domains = found


def open_store(
    rows: list[Row], manifest: Path, data: DataConfig, split: str, train: bool, progress=False
) -> ClipStore:
    """The :class:`ClipStore` of ``rows`` of ``split``, decoded as training or evaluation reads
    them: from ``data.cache`` when set (always preloaded, no media decoding), else from the
    media (preloaded when ``data.preload``).

    Frames are decoded at ``data.load_size`` for training with augmentation, else at
    ``data.frame_size``; a cache holds the train split at its training size, so the train split
    read for evaluation (CCA, cohorts, recalibration) comes at that size and every evaluation
    item is resized to ``frame_size``. The train split's frames are made square by
    ``data.frame_fit``, every other split's squashed (:func:`~avssl.data.frame_fit.split_fit`),
    whether read for training or evaluation, so a cache and the media give the same pictures.
    """
    size = data.load_size if (train and data.augment) else data.frame_size
    fit = split_fit(data, split)
    if data.cache:
        from avssl.data.shards import cached_clips, split_size

        size = size if train else split_size(data, split)
        loader = cached_clips(data.cache, rows, data, split, size)
        return ClipStore(rows, manifest, data, size, True, progress, loader, fit)
    return ClipStore(rows, manifest, data, size, data.preload, progress=progress, fit=fit)


def load_split(
    data: DataConfig,
    split: str,
    train: bool,
    *,
    manifest: Path | None = None,
    windows_per_clip: int = 1,
    seed: int = 0,
    progress: bool = True,
    sample: int | None = None,
    domains: list[str] | None = None,
) -> AVPairDataset:
    """Decode one split (or read it from ``data.cache``) into an :class:`AVPairDataset`.

    ``sample`` keeps a random subset of that many rows (drawn with ``seed``, kept in manifest
    order), so that a large split can be read in part. With ``domains``, each item carries the
    index of its row's domain (see :class:`AVPairDataset`).

    Args:
        data: data settings (manifest, cache, frame sizes, window, preloading).
        split: ``train``, ``val`` or ``test``.
        train: augment frames (decoded at ``data.load_size`` when ``data.augment``); otherwise
            resize only.
        manifest: the manifest to read; by default the one ``data`` points at
            (:func:`manifest_path`).
        windows_per_clip: items per clip per epoch.
        seed: seed of the subset and of the pair sampling.
        progress: show decoding (and generation) progress.
        sample: keep at most this many rows of the split; ``None``: all.
        domains: domain names, or ``None`` for no ``domain`` entry.

    Raises:
        ManifestError: the split has fewer than two usable clips.
    """
    manifest = manifest or manifest_path(data, progress)
    rows = read_manifest(manifest)
    chosen = pick_rows(rows, split, sample, seed)
    store = open_store(chosen, manifest, data, split, train, progress)
    err = too_few_error(manifest, split, len(chosen), store)
    if err is not None:
        raise err
    return AVPairDataset(store, data, class_names(rows), train, windows_per_clip, seed, domains)


def pick_rows(rows: list[Row], split: str, sample: int | None = None, seed: int = 0) -> list[Row]:
    """The rows of ``split``; with ``sample``, at most that many, drawn with ``seed`` and kept
    in manifest order (the rows :func:`load_split` decodes, listed before any is decoded)."""
    chosen = [r for r in rows if r.split == split]
    if sample is not None and len(chosen) > sample:
        keep = np.random.default_rng(seed).choice(len(chosen), sample, replace=False)
        chosen = [chosen[i] for i in sorted(keep)]
    return chosen


def too_few_error(
    manifest: Path, split: str, n_rows: int, store: ClipStore
) -> ManifestError | None:
    """The error of a split with fewer than two usable clips, with the first skipped clip's
    reason (``store.skipped``: ``(id, reason naming the file)``); None when two or more are."""
    if len(store) >= 2:
        return None
    where = f"{manifest}: split {split!r}"
    if n_rows == 0:
        return ManifestError(f"{where} has no rows (need at least 2 usable clips)")
    first = f"first: {store.skipped[0][1]}" if store.skipped else "none skipped"
    if len(store) == 0:
        return ManifestError(f"{where} has no usable clip of its {n_rows} ({first})")
    return ManifestError(
        f"{where} has {len(store)} usable clip of its {n_rows} (need at least 2; {first})"
    )
