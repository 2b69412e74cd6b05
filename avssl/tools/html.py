"""A small self-contained HTML page of query results: thumbnails and audio players inline.

Media are embedded as base64 data URIs (JPEG frames, 16-bit WAV windows) so the page is one
file. Every file name and label goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import soundfile as sf
from PIL import Image

_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{display:block}"
)


def jpeg_uri(frame: np.ndarray, quality: int = 85) -> str:
    """uint8 ``[H, W, 3]`` RGB frame -> ``data:image/jpeg;base64,...``."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def wav_uri(wave: np.ndarray, sample_rate: int) -> str:
    """float ``[N]`` mono samples in [-1, 1] -> ``data:audio/wav;base64,...`` (16-bit PCM)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1, 1), sample_rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _media_cell(media: dict | None) -> str:
    if not media:
        return "<td>-</td>"
    parts = []
    if media.get("image"):
        parts.append(f'<img src="{html.escape(media["image"])}" alt="frame">')
    if media.get("audio"):
        parts.append(f'<audio controls preload="none" src="{html.escape(media["audio"])}"></audio>')
    if media.get("error"):
        parts.append(f"<em>{html.escape(media['error'])}</em>")
    if media.get("note"):
        parts.append(f"<p><em>{html.escape(media['note'])}</em></p>")
    return "<td>" + "".join(parts) + "</td>"


def _time(t) -> str:
    return "-" if t is None else f"{t:.2f} s"


def results_page(query: dict, results: list[dict], query_media=None, media=None) -> str:
    """The whole HTML page.

    Args:
        query: ``{"path", "modality", "time", "target"}`` of the query.
        results: ``{"path", "time", "modality", "score"}`` dicts, best first.
        query_media: ``{"image": uri, "audio": uri, "error": text, "note": text}`` for the
            query, or None.
        media: one such dict (or None) per result.
    """
    media = media or [None] * len(results)
    esc = html.escape
    title = f"avssl query: {query['path']}"
    rows = [
        f"<tr><td>{i + 1}</td><td>{r['score']:.4f}</td><td>{esc(r['modality'])}</td>"
        f"<td>{_time(r['time'])}</td><td>{esc(r['path'])}</td>{_media_cell(m)}</tr>"
        for i, (r, m) in enumerate(zip(results, media, strict=True))
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{esc(query['modality'])} query &rarr; {esc(query['target'])}</h1>",
            f"<p>{esc(query['path'])} at {_time(query.get('time'))}</p>",
            f"<table><tr>{_media_cell(query_media)}</tr></table>",
            "<table><tr><th>#</th><th>score</th><th>modality</th><th>time</th><th>file</th>"
            "<th>media</th></tr>",
            *rows,
            "</table></body></html>",
        ]
    )
