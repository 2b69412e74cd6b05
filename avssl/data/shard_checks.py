"""Checking a shard cache against its index and the manifest: shard files of the size their
sidecars recorded, and cached samples made from the current manifest rows."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path

from avssl.data.manifest import Row
from avssl.data.shards import damaged
from avssl.errors import AvsslError


def row_digest(row: dict) -> str:
    """A short digest of a manifest row's JSON form (key order does not matter)."""
    return hashlib.sha1(json.dumps(row, sort_keys=True).encode()).hexdigest()[:16]


def check_sizes(root: Path, shards: list[dict]) -> None:
    """Refuse a cache whose shard files are missing or not the size their sidecars recorded.

    Args:
        root: the cache folder.
        shards: entries of ``index.json``'s ``shards`` to check.
    """
    for shard in shards:
        path = root / shard["name"]
        try:
            size = path.stat().st_size
        except OSError:
            raise AvsslError(f"{path}: shard missing (rebuild the cache)") from None
        if "bytes" in shard and size != shard["bytes"]:
            raise AvsslError(
                f"{path}: truncated or damaged shard ({size} bytes, {shard['bytes']} written); "
                "rebuild the cache into a new folder"
            )


def _digests(root: Path, shard: dict) -> list[str]:
    """Row digests of a shard's samples in order; a cache written before sidecars recorded
    them has its rows read from the tar (headers and the small JSON members only)."""
    if "digests" in shard:
        return shard["digests"]
    path, out = root / shard["name"], []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.name.partition(".")[2] == "json":
                    out.append(row_digest(json.loads(tar.extractfile(member).read())))
    except (tarfile.TarError, OSError, ValueError) as err:
        raise AvsslError(f"{path}: unreadable shard ({err})") from None
    if len(out) != shard["n"]:
        raise damaged(path, len(out), shard["n"])
    return out


def changed_rows(root: Path, shards: list[dict], rows: Iterable[Row]) -> list[str]:
    """Ids of ``rows`` whose cached sample was made from a different manifest row.

    Args:
        root: the cache folder.
        shards: entries of ``index.json``'s ``shards`` (or sidecars) to look in.
        rows: current manifest rows; rows not in ``shards`` are not reported.

    Returns:
        The ids whose row changed since it was cached, in shard order.
    """
    wanted = {r.id: r for r in rows}
    out = []
    for shard in shards:
        if wanted.keys().isdisjoint(shard["ids"]):
            continue
        for id_, digest in zip(shard["ids"], _digests(root, shard), strict=True):
            if id_ in wanted and row_digest(wanted[id_].to_json()) != digest:
                out.append(id_)
    return out
