"""Which stream of a container is its picture, whether it is a still, and how a still is
decoded so that a damaged one is refused rather than shown wrong."""

from __future__ import annotations

import av

from avssl.errors import MediaError


def video_stream(container):
    """The first video stream that is not cover art, or ``None``."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def is_image(container) -> bool:
    """Whether a file opened with PyAV is a still image, by the demuxer FFmpeg chose for it
    (``png_pipe``, ``jpeg_pipe``, ..., ``image2``, or ``apng``: an animated PNG is read as its
    first picture, as before), not by the name alone: FFmpeg picks ``image2`` for some image
    names (``.jpg``) but probes the content first, so a video named ``.png`` is a video (it was
    read as one still until 2026-12-07) and a picture named ``.mp4`` a picture. A GIF (the
    ``gif`` demuxer) is a video: its pictures have times."""
    name = container.format.name
    return name in ("image2", "apng") or name.endswith("_pipe")


def decode_strictly(stream, path) -> None:
    """Make the decoder of a still image's ``stream`` refuse what it would show wrong.

    FFmpeg's JPEG decoder conceals what a file cut short lacks (a JPEG cut in half decodes
    whole, its lower part blank) and only logs a warning; with ``err_detect=explode`` it raises
    instead, as its PNG, BMP and WebP decoders already do for a cut file. A still has no later
    frame to recover in, so any error in it spoils the one picture. Other codecs are left as
    they are: FFmpeg's TIFF decoder, for one, would then refuse every tag it does not know
    (a resolution unit, an orientation), which most real TIFFs carry; but a JPEG-compressed
    TIFF, which it decodes black, is refused by its compression tag (read with Pillow, which
    reads only the header). Call it before the first decode (it sets the decoder's options,
    which take effect when it opens).

    Args:
        stream: the video stream of a file :func:`is_image` found to be a still.
        path: the file.

    Raises:
        MediaError: a JPEG-compressed TIFF.
    """
    codec = stream.codec_context.name
    if codec == "mjpeg":
        stream.codec_context.options = {"err_detect": "explode"}
    elif codec == "tiff":
        from PIL import Image

        try:
            with Image.open(path) as img:
                compression = img.tag_v2.get(259) if hasattr(img, "tag_v2") else None
        except (OSError, ValueError, SyntaxError):  # Pillow cannot parse it: FFmpeg decides
            compression = None
        if compression in (6, 7):  # TIFF's old-style and new-style JPEG
            raise MediaError(path, "a JPEG-compressed TIFF, which FFmpeg misreads: make it a PNG")
