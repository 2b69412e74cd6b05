"""File-name extensions of the media avssl reads: the one list for every command that finds
media files by name (dataset preparation, the audio classification sets, ``avssl index``).

A file is recognised by its extension (case-insensitive: compare ``path.suffix.lower()``); what
it really holds is only learnt when it is decoded. ``.ogg`` counts as audio, though it may hold
a video too. Stills (:data:`IMAGE_EXTS`) are not :data:`MEDIA_EXTS`: they have neither sound nor
time, and only the commands that read pictures (``avssl index``, the localisation sets) take
them (an animated PNG is its first picture; GIF and TIFF files are not stills here,
:data:`IMAGE_EXTS`).
"""

from __future__ import annotations

from avssl.data.media_checks import IMAGE_EXTS, SOUNDFILE_EXTS

VIDEO_EXTS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".3gp", ".mpg", ".mpeg", ".ogv",
    ".ts", ".mts", ".m2ts", ".wmv", ".asf",  # MPEG transport streams (broadcast, camcorders), ASF
})  # fmt: skip
# soundfile's formats, and those PyAV decodes
AUDIO_EXTS = SOUNDFILE_EXTS | {".mp3", ".m4a", ".aac", ".opus", ".wma"}
MEDIA_EXTS = VIDEO_EXTS | AUDIO_EXTS  # a file with sound or moving pictures
INDEXABLE_EXTS = MEDIA_EXTS | IMAGE_EXTS  # what ``avssl index`` embeds: also stills

__all__ = ["AUDIO_EXTS", "IMAGE_EXTS", "INDEXABLE_EXTS", "MEDIA_EXTS", "VIDEO_EXTS"]
