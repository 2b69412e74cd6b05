"""``--probe`` of the ``prepare`` scripts: test-decode every row before training reads it.

A download cut short keeps a header that declares its whole length and its first seconds
decode, so only a window at its end shows the damage; :func:`probe_rows` decodes a frame and a
short audio window at the start and at the end of every row, in parallel, and moves the rows
that fail to the report's unreadable items.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from avssl.data.audio_header import truncation
from avssl.data.manifest import Row, resolve
from avssl.errors import MediaError
from avssl.prep.report import MANIFEST, PrepReport

# a row may end this much after its media (downloaders round times; a video's last frame or
# audio packet may fall short of the segment): --probe trims such an end instead of failing
END_SLACK_S = 0.5


def probe_row(
    row: Row, out: Path, window: float = 0.5, sample_rate: int = 16000, picture: bool = True
) -> tuple[Row, str | None]:
    """Decode a frame (unless not ``picture``: audio-only datasets) and a short audio window
    at the start of ``row`` and again at its end.

    The end is the row's ``end``, else where the shorter of its media files declares it ends,
    as training reads the row (:func:`avssl.data.media.read_clip`): a download cut short keeps
    a header that declares the whole length, and its first seconds decode, so only a window
    at the end shows it before training draws one there. A WAV or AIFF file cut short reads
    as a complete shorter file, so its header's declared size is checked too
    (:func:`~avssl.data.audio_header.truncation`). A row ``end`` past the media's by at most
    :data:`END_SLACK_S` is trimmed to the media's.

    Returns:
        ``(row, None)`` with the row to write (its ``end`` perhaps trimmed), or
        ``(row, the reason it fails)``.
    """
    from avssl.data import media  # torch: only for --probe, so --help and a plain run start fast

    visual, audio = resolve(out / MANIFEST, row.visual), resolve(out / MANIFEST, row.audio)
    sound = audio or visual
    for f in {visual, sound}:
        if (cut := truncation(f)) is not None:
            return row, f"{os.path.normpath(f)}: {cut}"
    try:
        ends = [media.probe(f).duration for f in {visual, sound}]
        media_end = min((e for e in ends if e is not None), default=None)
        end = row.end if row.end is not None else media_end
        if end is not None and media_end is not None and 0 < end - media_end <= END_SLACK_S:
            end = media_end
            row = dataclasses.replace(row, end=end)
        starts = [row.start]
        if end is not None and end - row.start > window:
            starts.append(end - window)
        for t in starts:
            if picture:
                media.read_frames(visual, t, 0.04, 25.0, 32)
            length = window if end is None else min(window, end - t)
            media.read_audio(sound, t, length, sample_rate)
    except MediaError as err:  # which file: a row may have a video and a separate audio
        return row, f"{os.path.normpath(err.path)}: {err.reason}"
    return row, None


def probe_rows(report: PrepReport, out: Path, workers: int = 2, picture: bool = True) -> None:
    """Test-decode every row in parallel (see :func:`probe_row`); rows that fail move to
    ``report.unreadable``, the others are kept (an end past the media's trimmed)."""
    report.made.folder(out)  # relative paths may climb out of it (".."); removed on failure
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda r: probe_row(r, Path(out), picture=picture), report.rows)
        bar = tqdm(jobs, total=len(report.rows), desc=f"{report.dataset}: probe", unit="clip",
                   file=sys.stderr, disable=None)  # fmt: skip
        results = list(bar)
    kept = []
    for row, reason in results:
        if reason is None:
            kept.append(row)
        else:
            report.skip_unreadable(row.id, reason)
    report.rows = kept
