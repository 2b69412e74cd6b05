"""Find downloaded YouTube clips in a local folder, whatever common naming scheme they use.

Recognised names (any extension PyAV or soundfile reads; an optional ``Y`` prefix, as written by
some AudioSet downloaders, is accepted):

* ``{YTID}.ext``: either the whole video or just the segment, decided from its duration (a
  cut is at most :data:`CUT_SLACK_S` (3 s of a 10-s segment) longer than the segment, as a
  keyframe-snapped download leaves it; a whole video is longer);
* ``{YTID}_{start}.ext``: the segment starting at ``start`` seconds (int, float or zero-padded,
  e.g. VGGSound's ``zpWuikVorYg_000032``);
* ``{YTID}_{start_ms}_{end_ms}.ext``: the segment ``[start_ms, end_ms)`` in milliseconds, or in
  seconds when written with decimals (``{YTID}_30.000_40.000``) or when whole seconds give the
  segment's own times (``{YTID}_30_40`` for the segment 30-40 s, which read as milliseconds would
  be a 10-ms cut).

A segment cut holds only the segment, so its row starts at 0 (and ends at the file's end when the
name does not give it); a whole video keeps the CSV times. An audio-only file named like the video
chosen (``yt-dlp -f bv,ba`` keeps picture and sound apart) is the row's sound; a segment found
only as audio-only files has no picture, so it is missing for a correspondence manifest.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from avssl.data.extensions import MEDIA_EXTS, VIDEO_EXTS
from avssl.data.media_checks import check_file
from avssl.data.walk import walk_files
from avssl.errors import MediaError

TIME_TOLERANCE_S = 0.5  # a file's start may be rounded (e.g. to whole seconds) by downloaders
# how much longer than its segment a cut may be: a stream-copied download starts and ends on
# keyframes, a GOP (often 2 s on YouTube) or so around the segment; at most this share of the
# segment, so a whole video of a short segment is not taken for a cut
CUT_SLACK_S, CUT_SLACK_SHARE = 3.0, 0.3


@dataclass(frozen=True)
class ClipFile:
    """One media file and what its name says: ``start`` None means "name has no times"."""

    path: Path
    ytid: str
    start: float | None = None
    end: float | None = None


def _number(text: str) -> float | None:
    """A start time in a file name (a finite number >= 0), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_name(stem: str, wanted: set[str]) -> ClipFile | None:
    """Split a file stem into (YTID, start, end) given the set of YTIDs being looked for."""
    for s in (stem, stem[1:] if stem.startswith("Y") else None):
        if s is None:
            continue
        if s in wanted:
            return ClipFile(Path(), s)
        head, _, t = s.rpartition("_")
        if head in wanted and (t_start := _number(t)) is not None:
            return ClipFile(Path(), head, t_start)
        head2, _, t0 = head.rpartition("_")
        if head2 in wanted and t0.isdigit() and t.isdigit():
            return ClipFile(Path(), head2, int(t0) / 1000, int(t) / 1000)
        if head2 in wanted and "." in t0 + t and None not in (s0 := _number(t0), s1 := _number(t)):
            return ClipFile(Path(), head2, s0, s1)  # decimals are seconds: {YTID}_30.000_40.000
    return None


SCHEMES = "{YTID}.ext, {YTID}_{start}.ext or {YTID}_{start_ms}_{end_ms}.ext"


def _id_prefix(stem: str, wanted: set[str], lengths: list[int]) -> str | None:
    """The longest of ``wanted`` (whose lengths are ``lengths``, longest first) that ``stem``
    (or ``stem`` less a ``Y`` prefix) starts with: one set look-up per length (YouTube ids are
    all 11 characters), cheap for every file of a large folder."""
    for s in (stem, stem[1:] if stem.startswith("Y") else ""):
        for n in lengths:
            if n < len(s) and s[:n] in wanted:
                return s[:n]
    return None


def index_folder(
    folder: str | os.PathLike,
    wanted: set[str],
    unnamed: dict[str, list[Path]] | None = None,
) -> dict[str, list[ClipFile]]:
    """Every media file under ``folder`` (recursively) named after one of ``wanted``, by YTID.

    Each YTID's files come in folder and name order, videos before audio-only files (an
    ``{YTID}.m4a`` beside ``{YTID}.mp4``, as ``yt-dlp -f bestaudio`` leaves, is not the picture).
    When ``unnamed`` is given, each media file whose name starts with one of ``wanted`` but
    follows none of the schemes (``{YTID}-30.mp4``) is added to it under that YTID, so that a
    missing clip's reason can name the file to rename (:func:`missing_reason`).
    """
    found: dict[str, list[ClipFile]] = {}
    lengths = sorted({len(w) for w in wanted}, reverse=True)
    for p in walk_files(folder):
        if p.suffix.lower() not in MEDIA_EXTS:
            continue
        clip = parse_name(p.stem, wanted)
        if clip is not None:
            found.setdefault(clip.ytid, []).append(ClipFile(p, clip.ytid, clip.start, clip.end))
        elif unnamed is not None and (ytid := _id_prefix(p.stem, wanted, lengths)) is not None:
            unnamed.setdefault(ytid, []).append(p)
    for clips in found.values():  # a video before an audio-only file of the same clip
        clips.sort(key=lambda c: c.path.suffix.lower() not in VIDEO_EXTS)
    return found


def missing_reason(
    ytid: str, folder: Path, unnamed: dict[str, list[Path]], reason: str | None = None
) -> str:
    """Why no file of ``ytid`` was found under ``folder`` (or ``reason``, :func:`locate`'s, when
    files of the id hold other segments), naming a file whose name starts with the id but
    follows none of the schemes (``unnamed``, from :func:`index_folder`) if any."""
    sep = "; " if reason else ": "
    reason = reason or f"no file named after {ytid} under {folder}"
    if others := unnamed.get(ytid):
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        return (
            f"{reason}{sep}{others[0]}{more} starts with the id but follows none of the naming "
            f"schemes ({SCHEMES}); rename it"
        )
    return reason


def locate(
    candidates: list[ClipFile], start: float, end: float, layout: str = "auto", segments: int = 1
) -> tuple[Path, float, float | None] | str:
    """The file holding segment ``[start, end)`` and the segment's times inside it.

    Args:
        candidates: files of the segment's YTID.
        start: segment start in the source video (s).
        end: segment end in the source video (s).
        layout: for ``{YTID}.ext`` names: "whole" (full videos), "segment" (cut segments) or
            "auto" (a cut when the file is at most ``CUT_SLACK_S`` longer than the segment,
            and 30 % of it, else the whole video).
        segments: how many segments of this YTID the input lists: a ``{YTID}.ext`` cut holds
            one of them, but its name does not say which, so with more than one it is refused.

    Returns:
        ``(path, start, end)`` within the file (``end`` None: to the end of the file), or a
        string saying why none fits.

    Only videos are candidates: an audio-only file is a video's separate sound
    (:func:`companion_audio`), not a picture, even when its name gives the segment's times.

    Raises:
        MediaError: the chosen file is empty or a broken link, or probing a ``{YTID}.ext`` file
            in "auto" layout (its duration) fails.
    """
    videos = [c for c in candidates if c.path.suffix.lower() in VIDEO_EXTS]
    if not videos:
        names = ", ".join(c.path.name for c in candidates[:3])
        return f"only audio-only files ({names}): no picture for the segment"
    length, hint = end - start, None
    for c in videos:
        if c.end is not None and (c.end - c.start) * 100 < length:
            seconds = (c.start * 1000, c.end * 1000)
            if max(abs(seconds[0] - start), abs(seconds[1] - end)) <= TIME_TOLERANCE_S:
                check_file(c.path)  # {YTID}_30_40: the segment's own times, in seconds
                return c.path, 0.0, min(length, seconds[1] - seconds[0])
            # {YTID}_0_10 read as milliseconds is a 10-ms cut of a 10-s segment
            hint = (
                f"{c.path.name}: its name spans {c.end - c.start:g} s of a {length:g}-s "
                "segment (times in seconds? the scheme is {YTID}_{start_ms}_{end_ms})"
            )
            continue
        if c.start is not None and abs(c.start - start) <= TIME_TOLERANCE_S:
            # A cut named without its end is used to its own end (it may be shorter than the
            # CSV says); this costs no probe, which matters for millions of clips, only a
            # size check (an empty file is a failed download; --probe finds the rest)
            check_file(c.path)
            return c.path, 0.0, None if c.end is None else min(length, c.end - c.start)
    plain = [c for c in videos if c.start is None]
    if not plain:
        times = ", ".join(f"{c.start:g} s" for c in videos)
        return hint or f"no file for the segment at {start:g} s (found {times})"
    path = plain[0].path
    check_file(path)
    ambiguous = (
        f"{path.name} is a cut of one segment, but {segments} segments of {plain[0].ytid} are "
        f"listed: cannot tell which (name it {{YTID}}_{{start}})"
    )
    if layout == "whole":
        return path, start, end
    if layout == "segment":
        return ambiguous if segments > 1 else (path, 0.0, length)
    from avssl.data import media  # torch: only when a duration must be probed

    duration = media.probe(path).duration
    if duration is None:
        raise MediaError(path, "unknown duration (pass --layout whole or segment)")
    # A cut is about the segment's length, up to CUT_SLACK_S more when the download snapped to
    # keyframes (read as a whole video, its start would be applied twice); a whole video
    # normally reaches the segment's end (AudioSet's end times stop at the video's end), and
    # one that ends inside the segment is still longer than a cut.
    cut = duration <= length + min(CUT_SLACK_S, CUT_SLACK_SHARE * length)
    if cut and segments > 1:
        return ambiguous
    if start == 0 or cut:
        return path, 0.0, min(length, duration)
    if start >= duration - TIME_TOLERANCE_S:
        return f"the segment at {start:g} s starts after the end of {path} ({duration:g} s)"
    return path, start, min(end, duration)


def companion_audio(candidates: list[ClipFile], chosen: Path) -> Path | None:
    """An audio-only file among ``candidates`` named with the same times as the video
    ``chosen`` (its separately downloaded sound), or None."""
    if chosen.suffix.lower() not in VIDEO_EXTS:
        return None
    times = next((c.start, c.end) for c in candidates if c.path == chosen)
    for c in candidates:
        if c.path.suffix.lower() not in VIDEO_EXTS and (c.start, c.end) == times:
            return c.path
    return None
