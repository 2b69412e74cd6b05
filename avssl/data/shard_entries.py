"""The shape of a shard cache's records: ``index.json`` and each shard's sidecar entry, checked
where they are read, so that a hand-edited or damaged file is one line naming it (never a
``KeyError`` deep in a reader), and a shard copied under another name, or a clip held by two
shards, is refused rather than read twice in an epoch."""

from __future__ import annotations

import re
from pathlib import Path

from avssl.errors import AvsslError

SHARD_NAME = re.compile(r"shard-\d{6}\.tar")


def entry_error(entry: object) -> str | None:
    """Why ``entry`` is not a shard record (``name``, ``n`` and the per-sample lists ``keys``,
    ``ids``, ``splits``), or None."""
    if not isinstance(entry, dict):
        return "a shard entry is not a JSON object"
    name = entry.get("name")
    if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
        return f"a shard name {name!r} is not shard-NNNNNN.tar (a bare name in the cache folder)"
    n = entry.get("n")
    for key in ("keys", "ids", "splits"):
        values = entry.get(key)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return f"{name}: its {key!r} is not a list of names"
        if len(values) != n:
            return f"{name}: {len(values)} {key} for n = {n!r} samples"
    return None


def check_entries(where: Path, entries: list) -> None:
    """Refuse records that are malformed, name one shard twice or list one clip in two shards.

    Args:
        where: the file (or folder) they were read from, named in the error.
        entries: the shard records.

    Raises:
        AvsslError: naming ``where`` and the first problem.
    """
    if not isinstance(entries, list):
        raise AvsslError(f"{where}: not a shard cache record ('shards' is not a list)")
    names, owner = set(), {}
    for entry in entries:
        problem = entry_error(entry)
        if problem:
            raise AvsslError(f"{where}: damaged shard cache record ({problem})")
        if entry["name"] in names:
            raise AvsslError(f"{where}: shard {entry['name']} is listed twice")
        names.add(entry["name"])
        for id_ in entry["ids"]:
            if id_ in owner:
                raise AvsslError(
                    f"{where}: clip {id_!r} is in both {owner[id_]} and {entry['name']} (a shard "
                    "copied into the cache?); an epoch would read it twice"
                )
            owner[id_] = entry["name"]


def check_index(path: Path, index: object) -> dict:
    """``index`` if it has the shape of an ``index.json`` (a JSON object with ``settings`` and
    valid ``shards``), else one error naming ``path``."""
    if not isinstance(index, dict) or not isinstance(index.get("settings"), dict):
        raise AvsslError(f"{path}: not a shard cache index (no 'settings' object)")
    check_entries(path, index.get("shards"))
    skipped = index.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(s, dict) for s in skipped):
        raise AvsslError(f"{path}: damaged shard cache record ('skipped' is not a list of objects)")
    return index
