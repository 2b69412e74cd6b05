"""Writing the decoded-clip shard cache (:mod:`avssl.data.shards` describes the layout and
reads it): numbered tar shards committed atomically, each with its JSON sidecar."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from avssl.atomic_write import write_text
from avssl.data.manifest import Row
from avssl.data.shard_checks import row_digest
from avssl.data.shard_entries import check_entries, entry_error
from avssl.data.shards import sample_key, shard_name
from avssl.errors import AvsslError


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(payload), 0o644  # mtime 0: identical inputs give identical shards
    tar.addfile(info, io.BytesIO(payload))


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON atomically (temporary file synced to disk, then renamed).

    Args:
        path: the file to (over)write.
        obj: any JSON-serialisable value.
    """
    write_text(path, json.dumps(obj), sync=True)


def _sync(f) -> None:
    # without it a power loss after the rename can leave a file of the right name and size
    # whose tail is zeros (a tar then reads as a shorter, valid shard)
    f.flush()
    os.fsync(f.fileno())


class ShardWriter:
    """Appends samples to numbered shards; each is committed atomically once it fills.

    A shard is written to ``.tmp`` files, then its sidecar JSON and finally the tar are synced
    to disk and renamed into place, so a present ``shard-*.tar`` is always complete and has its
    sidecar (which also lists a digest of each sample's manifest row).

    Args:
        out: the cache folder.
        first: number of the first shard to write.
        max_samples: samples per shard.
        max_bytes: a shard is closed once it holds at least this many bytes.
    """

    def __init__(self, out: Path, first: int, max_samples: int, max_bytes: int):
        self.out, self.number = Path(out), first
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.committed: list[dict] = []
        self._tar = self._file = None
        self._entry: dict = {}

    def add(self, row: Row, frames: np.ndarray, audio: np.ndarray) -> None:
        """Store one clip: frames uint8 ``[T, H, W, 3]``, audio float32 ``[N]``.

        Args:
            row: the clip's manifest row (stored as JSON; its ``id`` gives the sample key).
            frames: uint8 ``[T, H, W, 3]`` decoded frames.
            audio: float32 ``[N]`` mono audio.
        """
        if self._tar is None:
            name = shard_name(self.number)
            # open across add() calls; closed by flush() or abort()
            self._file = open(self.out / (name + ".tmp"), "wb")  # noqa: SIM115
            self._tar = tarfile.open(  # noqa: SIM115
                fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT
            )
            self._entry = {"name": name, "n": 0}
            self._entry.update({k: [] for k in ("keys", "ids", "splits", "lengths", "digests")})
        key = sample_key(row.id)
        _add(self._tar, f"{key}.frames.npy", _npy(frames.astype(np.uint8, copy=False)))
        _add(self._tar, f"{key}.audio.npy", _npy(audio.astype(np.float32, copy=False)))
        _add(self._tar, f"{key}.json", json.dumps(row.to_json()).encode())
        e = self._entry
        e["n"] += 1
        e["keys"].append(key)
        e["ids"].append(row.id)
        e["splits"].append(row.split)
        e["lengths"].append([int(frames.shape[0]), int(audio.shape[0])])
        e["digests"].append(row_digest(row.to_json()))
        if e["n"] >= self.max_samples or self._tar.fileobj.tell() >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        """Commit the shard being written (if any)."""
        if self._tar is None:
            return
        self._tar.close()  # leaves the file open
        _sync(self._file)
        self._file.close()
        name = self._entry["name"]
        tmp = self.out / (name + ".tmp")
        self._entry["bytes"] = tmp.stat().st_size
        write_json(self.out / name.replace(".tar", ".json"), self._entry)
        os.replace(tmp, self.out / name)
        self.committed.append(self._entry)
        self._tar, self.number = None, self.number + 1

    def abort(self) -> None:
        """Drop the shard being written (an interrupted run keeps only complete shards)."""
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            (self.out / (self._entry["name"] + ".tmp")).unlink(missing_ok=True)
            self._tar = None


def complete_shards(out: Path) -> list[dict]:
    """Sidecar entries of every committed shard in ``out`` (stale ``.tmp`` files are removed)."""
    # a killed run's partial tar, and its sidecar's temporary file (atomic_write.temp_sibling)
    for tmp in [*out.glob("shard-*.tmp"), *out.glob(".shard-*.json.tmp*")]:
        tmp.unlink()
    entries = []
    for tar in sorted(out.glob("shard-*.tar")):
        sidecar = tar.with_suffix(".json")
        try:
            entry = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            raise AvsslError(f"{sidecar}: missing or unreadable shard sidecar") from None
        problem = entry_error(entry)
        if problem is None and entry["name"] != tar.name:  # a shard copied under a new name
            problem = f"it names {entry['name']}, not {tar.name}"
        if problem:
            raise AvsslError(f"{sidecar}: damaged shard sidecar ({problem})")
        entries.append(entry)
    check_entries(out, entries)  # no clip in two shards
    return entries


def drop_damaged(out: Path, entries: list[dict]) -> tuple[list[dict], list[str]]:
    """Delete the committed shards whose tar is not the size its sidecar recorded, so that a
    resumed run decodes their clips again instead of trusting them.

    A committed shard is written whole and synced before it is renamed into place
    (:class:`ShardWriter`), so a shard of another size was damaged afterwards (cut short by a
    copy, a full disk, a killed ``rsync``) and none of its samples can be trusted. Only the size
    is checked (a stat per shard); a sidecar without a recorded size is kept as it is.

    Args:
        out: the cache folder.
        entries: sidecar entries of its committed shards (:func:`complete_shards`).

    Returns:
        ``(kept, dropped)``: the entries of the intact shards, and one
        ``"NAME (SIZE of BYTES bytes)"`` for each shard deleted with its sidecar.
    """
    kept, dropped = [], []
    for entry in entries:
        tar = out / entry["name"]
        size = tar.stat().st_size
        if "bytes" not in entry or size == entry["bytes"]:
            kept.append(entry)
            continue
        dropped.append(f"{entry['name']} ({size} of {entry['bytes']} bytes)")
        tar.unlink()
        tar.with_suffix(".json").unlink(missing_ok=True)
    return kept, dropped
