"""Which AV-Digits split each FSDD recording and each MNIST image belongs to.

The split rules of :mod:`avssl.prep.avdigits`: audio is split by speaker (the test speakers,
with a fallback when none is present; validation by take number or by ``--val-speaker``) and
MNIST images by index, stratified by digit, so neither voices nor handwriting are shared across
splits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from avssl.data.manifest import Row
from avssl.errors import AvsslError
from avssl.prep.mnist import Recording
from avssl.prep.report import PrepReport

VAL_TAKE_PERIOD = 10  # default validation takes: take % 10 == 0
DEFAULT_TEST_SPEAKERS = ("theo", "yweweler")  # the issue's; not in the development recordings


def split_speakers(
    present: list[str], named: str | None, val_speaker: str | None, report: PrepReport
) -> tuple[list[str], str | None]:
    """Test speakers among ``present`` and the validation speaker.

    Args:
        present: the speakers of the recordings.
        named: ``--test-speakers`` as given (comma-separated), or None for the default
            (:data:`DEFAULT_TEST_SPEAKERS` that are present, else the alphabetically last
            present speaker, with a note in the report).
        val_speaker: ``--val-speaker``, or None.
        report: where the fallback's note goes.

    Raises:
        AvsslError: a named test speaker is absent (a typo must not silently test on another
            voice), no training speaker would remain, or ``val_speaker`` is not usable.
    """
    if named is not None:
        # a speaker named twice is one test speaker (listed once in the report)
        requested = list(dict.fromkeys(s.strip() for s in named.split(",") if s.strip()))
        if not requested or (absent := [s for s in requested if s not in present]):
            what = f"no recordings of {', '.join(absent)}" if requested else "names no speaker"
            raise AvsslError(
                f"--test-speakers {named}: {what} (speakers present: {', '.join(present)})"
            )
    else:
        requested = list(DEFAULT_TEST_SPEAKERS)
    test = [s for s in requested if s in present]
    absent = [s for s in requested if s not in present]
    if not test:
        test = [sorted(present)[-1]]
        report.note(
            f"test speakers {','.join(requested)} absent; using {test[0]} (alphabetically last "
            "present speaker) as the test speaker"
        )
    elif absent:
        report.note(f"test speakers {','.join(absent)} absent; testing on {','.join(test)}")
    train = [s for s in present if s not in test]
    if val_speaker is not None:
        if val_speaker not in train:
            raise AvsslError(f"--val-speaker {val_speaker}: not a present training speaker")
        train.remove(val_speaker)
    if not train:
        raise AvsslError(f"no training speaker left (present: {', '.join(sorted(present))})")
    return test, val_speaker


def check_speaker_case(recordings: list[Recording], fsdd: Path) -> None:
    """Refuse speaker names that differ only in case (``3_Nicolas_5.wav`` beside
    ``0_nicolas_0.wav``): split by speaker, one voice could be trained on and tested.

    Raises:
        AvsslError: naming both spellings and a file of each.
    """
    first: dict[str, Recording] = {}
    for rec in recordings:
        other = first.setdefault(rec.speaker.casefold(), rec)
        if other.speaker != rec.speaker:
            raise AvsslError(
                f"{fsdd}: speakers {other.speaker} and {rec.speaker} differ only in case (e.g. "
                f"{other.path.name} and {rec.path.name}): one voice could fall in two splits; "
                "rename the files to one spelling"
            )


def check_splits(
    recordings: list[Recording],
    test: list[str],
    val_speaker: str | None,
    report: PrepReport,
    fsdd: Path,
) -> None:
    """Refuse, before anything is written, recordings that leave no training split; note an
    empty validation split (training then has no checkpoint choice).

    Raises:
        AvsslError: no recording falls in the train split.
    """
    found = {audio_split(rec, test, val_speaker) for rec in recordings}
    why = "(the speakers, --test-speakers, --val-speaker and --max-takes decide the splits)"
    if "train" not in found:
        raise AvsslError(f"{fsdd}: no recording falls in the train split {why}")
    if "val" not in found:
        report.note(f"no recording falls in the val split {why}")


def audio_split(rec: Recording, test: list[str], val_speaker: str | None) -> str:
    """The split of one recording: ``"test"``, ``"val"`` or ``"train"``.

    Test speakers' recordings go to test. Of the others, validation takes ``val_speaker``'s
    when given, else every take divisible by :data:`VAL_TAKE_PERIOD`; the rest is train.
    """
    if rec.speaker in test:
        return "test"
    if val_speaker is not None:
        return "val" if rec.speaker == val_speaker else "train"
    return "val" if rec.take % VAL_TAKE_PERIOD == 0 else "train"


def image_pools(
    labels: np.ndarray,
    n_test_file: int | None,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    exclude: np.ndarray | None = None,
) -> dict[str, list[tuple[str, int]]]:
    """Disjoint MNIST images per split as ``(source, index)``; source "main" or "test".

    Stratified: each digit's images of the main file are permuted (seeded) and cut by the
    fractions, so every split holds every digit. With a separate test file (``n_test_file``
    images) the main file is cut into train and val only, less the indices ``exclude`` (its
    images that the test file holds too, :func:`shared_images`).
    """
    pools: dict[str, list[tuple[str, int]]] = {"test": [], "val": [], "train": []}
    rng = np.random.default_rng([seed, 7])
    keep = np.ones(len(labels), bool)
    if exclude is not None:
        keep[exclude] = False
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero((labels == digit) & keep))
        n_test = 0 if n_test_file is not None else int(round(test_fraction * len(idx)))
        n_val = int(round(val_fraction * len(idx)))
        pools["test"] += [("main", int(i)) for i in idx[:n_test]]
        pools["val"] += [("main", int(i)) for i in idx[n_test : n_test + n_val]]
        pools["train"] += [("main", int(i)) for i in idx[n_test + n_val :]]
    if n_test_file is not None:
        pools["test"] = [("test", i) for i in range(n_test_file)]
    return {k: sorted(v) for k, v in pools.items()}


def shared_images(main: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Indices of the ``main`` images (uint8 ``[N, H, W]``) whose pixels are those of an image
    of ``test``: the same handwriting must not be trained on and tested (the same file given
    twice, or two files that overlap)."""
    seen = {image.tobytes() for image in test}
    return np.array([i for i, image in enumerate(main) if image.tobytes() in seen], np.int64)


def check_digits(by_digit: dict, files: dict[str, Path]) -> None:
    """Refuse a split whose images lack a digit (any may be drawn for a canvas cell), naming
    the split's file (``files[split]``) before any recording is read."""
    for split, groups in by_digit.items():
        if missing := [d for d, images in groups.items() if not images]:
            raise AvsslError(f"{files[split]}: the {split} images hold no digit {missing[0]}")


def pool_by_digit(pool, labels) -> dict[int, list[tuple[str, int]]]:
    """A split's images (``(source, index)``) grouped by the digit their ``labels`` give."""
    out: dict[int, list[tuple[str, int]]] = {d: [] for d in range(10)}
    for src, i in pool:
        out[int(labels[src][i])].append((src, i))
    return out


def heldout_rows(rows: list[Row]) -> list[Row]:
    """The validation voice as a test split: the first canvas of each training and validation
    recording, validation rows relabelled ``test``; the real test split is left out."""
    seen, out = set(), []
    for row in rows:
        if row.split == "test" or row.audio in seen:
            continue
        seen.add(row.audio)
        out.append(dataclasses.replace(row, split="test" if row.split == "val" else row.split))
    return out


def speakers_read(
    test: list[str], items: list[dict], report: PrepReport, failed: dict[str, str], args
) -> list[str]:
    """The test speakers with a recording read, once the recordings are decoded; a default test
    speaker none of whose recordings could be read is left out with a note.

    Args:
        test: the test speakers (:func:`split_speakers`).
        items: the written items (``speaker`` and ``split`` each).
        report: the run's report (its rows, and where the note goes).
        failed: speaker -> ``"ID: reason"`` of their first recording that could not be decoded.
        args: the parsed arguments (``fsdd``, ``test_speakers``).

    Raises:
        AvsslError: no training recording could be read, or a test speaker the user named, or
            every test speaker, has none: nothing is written.
    """
    if not any(row.split == "train" for row in report.rows):
        raise AvsslError(
            f"{args.fsdd}: no training recording could be read (nothing written){_example(failed)}"
        )
    read = {item["speaker"] for item in items}
    lost = [s for s in test if s not in read]
    # a speaker the user named, or an empty test split, is no benchmark; a default speaker
    # whose recordings cannot be read leaves the others to test on
    if lost and (args.test_speakers is not None or len(lost) == len(test)):
        raise AvsslError(
            f"{args.fsdd}: no recording of test speaker {lost[0]} could be read (nothing "
            f"written){_example(failed, lost[0])}"
        )
    if lost:
        test = [s for s in test if s in read]
        report.note(
            f"default test speaker {', '.join(lost)}: no recording could be read; testing on "
            f"{', '.join(test)}{_example(failed, lost[0])}"
        )
    return test


def _example(failed: dict[str, str], speaker: str | None = None) -> str:
    """``"; e.g. ID: REASON"`` of the first recording of ``speaker`` (else of anyone) that could
    not be decoded, from ``failed`` (speaker -> that text), or "" when there is none."""
    example = failed.get(speaker) if speaker else next(iter(failed.values()), None)
    return f"; e.g. {example}" if example else ""
