"""Shared by the audio-only classification sets (ESC-50, UrbanSound8K): folds and rows.

A manifest row needs a visual medium, so these audio-only rows point ``video`` *and* ``audio`` at
the audio file: they serve the audio side of the evaluations (sound classification with frozen
audio embeddings) and cannot be used to train correspondence, which needs frames. The official
protocol is k-fold cross-validation over the published folds; the manifest's split uses
``--test-fold`` (that fold -> test, the rest -> train) and ``folds.json`` maps every id to its
fold, for a user's own leave-one-fold-out loop over prepared manifests. ``evaluate.py classify
--dataset manifest`` scores the one ``--test-fold`` split; the full protocol runs on the
dataset's own folder (``--dataset esc50|us8k --root DIR``), which reads the official folds.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from avssl.atomic_write import write_text
from avssl.data.manifest import Row
from avssl.data.metadata_csv import csv_records, record_problem
from avssl.errors import AvsslError
from avssl.prep.probe_media import probe_rows
from avssl.prep.report import PrepReport, file_problem, relpath, start_run

FOLDS = "folds.json"


def add_audio_row(
    report: PrepReport, item: str, path: Path, out: Path, label: str, fold: int, test_fold: int
) -> None:
    """Add an audio-only row, or record the file as missing."""
    if not path.exists():
        report.skip_missing(item, f"no file {path}")
        return
    if (problem := file_problem(path)) is not None:
        report.skip_unreadable(item, f"{path}: {problem}")
        return
    rel = relpath(path, out)
    split = "test" if fold == test_fold else "train"
    report.add(Row(item, video=rel, audio=rel, labels=[label], split=split))


def write_folds(out: Path, folds: dict[str, int], report: PrepReport) -> None:
    """Write ``folds.json`` ({id: fold}) for the rows kept and mention it in the report; with
    no row kept nothing is written (:meth:`PrepReport.finish` then says so)."""
    kept = {r.id: folds[r.id] for r in report.rows}
    if not kept:
        return
    report.made.folder(out)
    write_text(report.made.file(out / FOLDS), json.dumps(kept, indent=0) + "\n")
    report.extra["folds"] = str(out / FOLDS)
    report.extra["fold_counts"] = {
        str(f): sum(1 for v in kept.values() if v == f) for f in sorted(set(kept.values()))
    }


def prepare_folds(
    dataset: str,
    title: str,
    args: argparse.Namespace,
    meta: Path,
    columns: tuple[str, str, str],
    audio_path: Callable[[dict, int], Path],
    keep: Callable[[dict], bool] = lambda rec: True,
    extra: tuple[str, ...] = (),
) -> int:
    """Write the manifest, ``folds.json`` and the report of a fold-annotated metadata CSV.

    Args:
        dataset: dataset name, for messages and the report.
        title: the dataset's folder as published, for the "is --root ..." hint.
        args: parsed options: ``root``, ``test_fold`` and those of ``add_common_args``.
        meta: the metadata CSV (a header, one row per clip).
        columns: its (file name, fold, label) columns.
        audio_path: the audio file of a CSV record, given the record and its fold.
        keep: which records to use (e.g. the ESC-10 subset).
        extra: further columns the script needs (those ``keep`` reads).

    Records with missing, extra or empty needed fields
    (:func:`~avssl.data.metadata_csv.record_problem`) and those whose fold is not a number are
    skipped and listed as unreadable, with their ``file:line``.

    Raises:
        AvsslError: ``meta`` is missing, unreadable or lacks a needed column, or
            ``--test-fold`` is not one of its folds.
    """
    if not meta.is_file():
        raise AvsslError(f"{meta}: no such file (is --root the {title} folder?)")
    file_col, fold_col, label_col = columns
    report = start_run(dataset, args, writes=(FOLDS,))
    folds: dict[str, int] = {}
    needed = (*columns, *extra)
    header, lines = csv_records(meta, needed)
    records, seen = [], {}  # item -> its first line
    for line, rec in lines:
        where = f"{meta}:{line}"
        item = Path(rec[file_col]).stem if (rec[file_col] or "").strip() else where
        problem = record_problem(rec, header, needed)
        if problem is not None:
            report.skip_unreadable(item, f"{where}: {problem}")
            continue
        if not keep(rec):
            continue
        if item in seen:  # one clip listed twice is one item, whatever its file holds
            report.skip_unreadable(item, f"{where}: duplicate of line {seen[item]}")
            continue
        rec[label_col] = rec[label_col].strip()  # " helicopter " is no class of its own
        if not rec[label_col]:
            report.skip_unreadable(item, f"{where}: empty {label_col}")
            continue
        try:
            fold = int(rec[fold_col])
        except ValueError:
            report.skip_unreadable(item, f"{where}: fold {rec[fold_col]!r} is not a number")
            continue
        seen[item] = line  # a line kept: one skipped above is no original (as evaluate.py)
        folds[item] = fold
        records.append((item, rec))
    present = sorted(set(folds.values()))
    if present and args.test_fold not in present:
        have = ", ".join(map(str, present))
        raise AvsslError(f"--test-fold {args.test_fold}: not a fold of {meta} (folds: {have})")
    for item, rec in records:
        path = audio_path(rec, folds[item])
        add_audio_row(report, item, path, args.out, rec[label_col], folds[item], args.test_fold)
    with report.made.removed_on_failure():  # folds.json goes too when the manifest fails
        if args.probe:
            probe_rows(report, args.out, args.workers, picture=False)  # audio-only
        if report.rows and not any(r.split == "test" for r in report.rows):
            report.note(
                f"no clip of --test-fold {args.test_fold} is usable: the manifest has no test "
                "split (evaluate.py classify --dataset manifest needs one; pick a fold that is "
                "present)"
            )
        write_folds(args.out, folds, report)
        return report.finish(args.out, args.force)
