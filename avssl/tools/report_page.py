"""The layout of ``avssl report``'s page: its style, header, table of contents and sections."""

from __future__ import annotations

import html
from pathlib import Path

SECTIONS = {
    "curves": "Training curves",
    "evaluations": "Evaluations",
    "gallery": "Retrieval gallery (audio \u2192 visual, test split)",
    "overlays": "Localisation overlays (test split)",
    "config": "Config",
}
_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1em}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    "pre{background:#f6f6f6;padding:1em;overflow:auto}.note{color:#777;font-style:italic}"
    ".row{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:1em;align-items:flex-start}"
    "figure{margin:0;width:140px;font-size:12px;overflow-wrap:anywhere}"
    "figure img{width:96px;height:96px;image-rendering:pixelated;border:3px solid #ddd}"
    "figure.query{width:320px}figure.query img{border-color:#36c}"
    "figure.hit img{border-color:#2a2}audio{width:300px;display:block}"
)
esc = html.escape


def render_page(run_dir: Path, sections: dict) -> str:
    """The whole page: a header, a table of contents and one ``<section>`` per entry of
    ``sections`` (``{key of SECTIONS: an object with the HTML in .body}``)."""
    title = f"avssl run report: {run_dir.resolve().name}"
    toc = " | ".join(f'<a href="#{key}">{esc(SECTIONS[key])}</a>' for key in sections)
    body = [
        f'<section id="{key}"><h2>{esc(SECTIONS[key])}</h2>\n{sec.body}</section>'
        for key, sec in sections.items()
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{esc(title)}</h1><p>{esc(str(run_dir.resolve()))}</p><p>{toc}</p>",
            *body,
            "</body></html>",
        ]
    )
