"""Shared bookkeeping of the ``prepare`` scripts: skip, count and report bad items.

Every script collects its rows in a :class:`PrepReport`, which counts and lists the items it
could not use (``missing``: no media file found; ``unreadable``: a file that cannot be decoded or
an annotation that cannot be used), stops at the first of them under ``--strict``, and finally
writes ``manifest.jsonl`` and ``prepare_report.json`` side by side; ``--probe``
(:func:`avssl.prep.probe_media.probe_rows`) first decodes a short window at the start and at the end
of every row in parallel to catch corrupt or cut-short media before training does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from avssl.atomic_write import write_text
from avssl.cli import json_line, positive_int
from avssl.cli_outputs import check_outputs_spare_inputs
from avssl.data.manifest import Row, write_manifest
from avssl.data.media_checks import check_file
from avssl.errors import AvsslError, MediaError
from avssl.prep.new_outputs import NewOutputs

MANIFEST = "manifest.jsonl"
REPORT = "prepare_report.json"
OUTPUTS = (MANIFEST, REPORT)  # written by every script; some write more
DUPLICATE = "duplicate id (an earlier item has the same one)"
NOT_UTF8 = "a file name in its path is not UTF-8 (the manifest is UTF-8 text; rename it)"


def add_common_args(parser: argparse.ArgumentParser, probe: bool = True) -> None:
    """Add ``--out``, ``--force``, ``--strict`` and (optionally) ``--probe`` / ``--workers``."""
    parser.add_argument("--out", type=Path, required=True, help="output folder of the manifest")
    parser.add_argument("--force", action="store_true", help="overwrite the existing output files")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad item")
    if probe:
        parser.add_argument(
            "--probe",
            action="store_true",
            help="test-decode every clip (a frame and an audio window at its start and end)",
        )
        parser.add_argument(
            "--workers", type=positive_int, default=2, help="parallel probes (threads)"
        )


def check_output(
    out: Path, force: bool, files: tuple[str, ...] = OUTPUTS, folders: tuple[str, ...] = ()
) -> None:
    """Check that a run may write ``files`` and ``folders`` in the output folder ``out``.

    Without ``force`` nothing that exists is replaced: an existing file of ``files`` or a
    non-empty folder of ``folders`` is refused, all of them named in the one-line error.

    Raises:
        AvsslError: ``out`` (or its nearest existing parent) is not a folder, an output is of
            the wrong kind (a folder where a file is written, or the reverse), or outputs exist
            and ``force`` is False.
    """
    out = Path(out)
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise AvsslError(f"{out}: --out is not UTF-8 text; choose another folder") from None
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                raise AvsslError(f"{parent}: not a folder (--out must be a folder)")
            break
    taken = []
    for name in files:
        if (out / name).is_dir():
            raise AvsslError(f"{out / name}: is a folder, not the file this run writes")
        if (out / name).exists():
            taken.append(name)
    for name in folders:
        path = out / name
        if path.exists() and not path.is_dir():
            raise AvsslError(f"{path}: not a folder (this run writes files into it)")
        if path.is_dir() and any(path.iterdir()):
            taken.append(f"{name}/")
    if taken and not force:
        also = f", as do {', '.join(taken[1:])}" if taken[1:] else ""
        raise AvsslError(f"{out / taken[0]}: already exists{also} (pass --force to overwrite)")


def relpath(path: str | os.PathLike, out: str | os.PathLike) -> str:
    """``path`` relative to the manifest folder ``out`` (POSIX separators).

    Links in ``path`` are kept, so that the manifest goes through the user's dataset folder (a
    link to storage that may be mounted elsewhere later) rather than its target. ``out`` is
    taken as its real path: a reader opens ``out/../x`` from the real folder, as the kernel
    does and :func:`avssl.data.manifest.resolve` expects.
    """
    return Path(os.path.relpath(_absolute(path), os.path.realpath(out))).as_posix()


def _absolute(path: str | os.PathLike) -> str:
    """``path`` made absolute with its links kept, except before a ``..``: the kernel takes
    ``link/..`` as the parent of the link's target, where a lexical ``normpath`` would drop
    ``link``, so the part up to the last ``..`` is resolved."""
    parts = Path(os.path.join(os.getcwd(), path)).parts
    if ".." not in parts:
        return os.path.normpath(os.path.join(*parts))
    last = len(parts) - 1 - parts[::-1].index("..")
    return os.path.join(os.path.realpath(os.path.join(*parts[: last + 1])), *parts[last + 1 :])


def file_problem(path: Path) -> str | None:
    """Why ``path`` is no media file at a glance (:func:`avssl.data.media_checks.check_file`:
    missing, a broken link, not a regular file, empty: a failed download), without decoding
    it; None if it may be one (``--probe`` decodes it)."""
    try:
        check_file(path)
    except MediaError as err:
        return err.reason
    return None


class PrepReport:
    """Rows written and items skipped by one preparation run.

    Args:
        dataset: dataset name, for messages and the report.
        strict: raise on the first bad item instead of recording it.
    """

    def __init__(self, dataset: str, strict: bool = False):
        self.dataset = dataset
        self.strict = strict
        self.rows: list[Row] = []
        self._ids: set[str] = set()
        self.missing: list[tuple[str, str]] = []
        self.unreadable: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.extra: dict = {}
        self.made = NewOutputs()  # what the run creates: removed again if it fails part-way

    def add(self, row: Row) -> None:
        """Add a row; a second item with an id already written is skipped as unreadable."""
        if row.id in self._ids:
            self.skip_unreadable(row.id, DUPLICATE)
            return
        try:  # the manifest is UTF-8: a file name in another encoding cannot be written in it
            "".join(filter(None, (row.id, row.video, row.image, row.audio))).encode("utf-8")
        except UnicodeEncodeError:
            self.skip_unreadable(row.id, NOT_UTF8)
            return
        self._ids.add(row.id)
        self.rows.append(row)

    def _bad(self, kind: list, item_id: str, reason: str) -> None:
        if self.strict:
            raise AvsslError(f"{self.dataset}: {item_id}: {reason} (--strict)")
        kind.append((str(item_id), str(reason)))

    def skip_missing(self, item_id: str, reason: str) -> None:
        """Record an item whose media file was not found."""
        self._bad(self.missing, item_id, reason)

    def skip_unreadable(self, item_id: str, reason: str) -> None:
        """Record an item whose media or annotation cannot be used."""
        self._bad(self.unreadable, item_id, reason)

    def note(self, message: str) -> None:
        """A decision the user should know about (printed to stderr and kept in the report)."""
        self.notes.append(message)
        print(f"{self.dataset}: {message}", file=sys.stderr)

    def split_counts(self) -> dict[str, int]:
        """Rows per split, by split name."""
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.split] = counts.get(row.split, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self, manifest: Path) -> dict:
        """The ``prepare_report.json`` of a run that wrote ``manifest``: counts, the missing and
        unreadable items as ``[id, reason]``, notes and the dataset's extra fields."""
        return {
            "dataset": self.dataset,
            "manifest": str(manifest),
            "written": len(self.rows),
            "splits": self.split_counts(),
            "missing": len(self.missing),
            "unreadable": len(self.unreadable),
            "missing_items": [list(x) for x in self.missing],
            "unreadable_items": [list(x) for x in self.unreadable],
            "notes": self.notes,
            **self.extra,
        }

    def finish(self, out: Path, force: bool) -> int:
        """Write the manifest and ``prepare_report.json``, print a summary and a JSON line.

        Raises:
            AvsslError: no row could be written (nothing usable was found).
        """
        check_output(out, force)  # again: the files may have appeared since the start
        manifest = Path(out) / MANIFEST
        if not self.rows:
            bad = self.missing[:1] + self.unreadable[:1]
            hint = f"; e.g. {bad[0][0]}: {bad[0][1]}" if bad else ""
            raise AvsslError(f"{self.dataset}: no usable items, nothing written to {out}{hint}")
        report = self.to_json(manifest)
        report_path = Path(out) / REPORT
        # both or neither: a manifest left without its report would refuse the rerun, and
        # under --force a new manifest beside the old report would contradict it
        with self.made.removed_on_failure() as made:
            if force:
                manifest.unlink(missing_ok=True)
                report_path.unlink(missing_ok=True)
            made.folder(out)
            write_manifest(made.file(manifest), self.rows)
            write_text(made.file(report_path), json.dumps(report, indent=1) + "\n")
        splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
        print(
            f"{self.dataset}: wrote {len(self.rows)} rows ({splits}) to {manifest}; "
            f"{len(self.missing)} missing, {len(self.unreadable)} unreadable (see {report_path})"
        )
        summary = {k: report[k] for k in ("dataset", "manifest", "written", "splits")}
        summary.update(missing=len(self.missing), unreadable=len(self.unreadable))
        summary["report"] = str(report_path)
        print(json_line(summary), flush=True)
        return 0


def start_run(
    dataset: str, args: argparse.Namespace, *folders: Path, writes: tuple[str, ...] = ()
) -> PrepReport:
    """Check the input ``folders`` and that the outputs may be written; a fresh report.

    Args:
        dataset: dataset name, for messages and the report.
        args: the parsed :func:`add_common_args` options (``out``, ``force``, ``strict``).
        folders: media folders that must exist.
        writes: files the script writes in ``--out`` besides the manifest and the report.

    Raises:
        AvsslError: a folder is missing, an output exists and ``--force`` is not given
            (see :func:`check_output`), or an output is an input.
    """
    for folder in folders:
        if not folder.is_dir():
            raise AvsslError(f"{folder}: no such media folder")
    check_outputs_spare_inputs(args.out, args, (*OUTPUTS, *writes))
    check_output(args.out, args.force, (*OUTPUTS, *writes))
    return PrepReport(dataset, args.strict)


def finish_run(report: PrepReport, args: argparse.Namespace) -> int:
    """Test-decode the rows under ``--probe``, then :meth:`PrepReport.finish`; exit status 0.
    A run that fails or is interrupted removes the folders and files it created."""
    with report.made.removed_on_failure():
        if args.probe:
            from avssl.prep.probe_media import probe_rows

            probe_rows(report, args.out, args.workers)
        return report.finish(args.out, args.force)
