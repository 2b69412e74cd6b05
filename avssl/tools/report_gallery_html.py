"""HTML of the model-dependent sections of ``avssl report``: the retrieval gallery (query frame,
audio player and top matches) and the heatmap overlays, with the clips skipped while decoding.
Media are data URIs (:mod:`avssl.tools.html`); every string from files or data is escaped."""

from __future__ import annotations

import html
from pathlib import Path

MAX_SKIPPED_LISTED = 10
esc = html.escape


def _caption(row, *lines: str) -> str:
    labels = ", ".join(row.labels) or "-"
    extra = "".join(f"{line}<br>" for line in lines)
    return (
        f"<figcaption>{extra}<b>{esc(row.id)}</b><br>label: {esc(labels)}<br>"
        f"<small>{esc(Path(row.visual).name)}</small></figcaption>"
    )


def _skipped_html(skipped: list[tuple[str, str]]) -> str:
    if not skipped:
        return ""
    items = "".join(
        f"<li>{esc(cid)}: {esc(reason)}</li>" for cid, reason in skipped[:MAX_SKIPPED_LISTED]
    )
    more = len(skipped) - MAX_SKIPPED_LISTED
    tail = f"<li>... and {more} more</li>" if more > 0 else ""
    return f'<p class="note">{len(skipped)} clip(s) skipped:</p><ul>{items}{tail}</ul>'


def gallery_html(clips, ranked: list[dict], sample_rate: int, total: int) -> str:
    """Query rows: the query's frame and audio player, then its top-k matches."""
    from avssl.tools.html import jpeg_uri, wav_uri

    thumbs = [jpeg_uri(t.numpy()) for t in clips.thumbs]
    parts = [
        f"<p>{len(ranked)} audio queries searched against the centre frames of "
        f"{len(clips.rows)} of {total} test clips. Green frames share a label with the query "
        "(&#10003;).</p>"
    ]
    for item in ranked:
        q = item["query"]
        audio = wav_uri(clips.waves[q].numpy(), sample_rate)
        cells = [
            f'<figure class="query"><img src="{thumbs[q]}" alt="query frame">'
            f'<audio controls preload="none" src="{audio}"></audio>'
            + _caption(clips.rows[q], "query audio")
            + "</figure>"
        ]
        for rank, m in enumerate(item["matches"], 1):
            mark = " &#10003;" if m["same_label"] else ""
            own = " (query's clip)" if m["same_clip"] else ""
            cls = ' class="hit"' if m["same_label"] else ""
            head = f"#{rank} score {m['score']:.3f}{mark}{own}"
            cells.append(
                f'<figure{cls}><img src="{thumbs[m["index"]]}" alt="match {rank}">'
                + _caption(clips.rows[m["index"]], head)
                + "</figure>"
            )
        parts.append('<div class="row">' + "".join(cells) + "</div>")
    return "\n".join(parts) + _skipped_html(clips.skipped)


def overlays_html(clips, idx: list[int], blended) -> str:
    """Clip ``idx[i]``'s centre frame beside ``blended[i]``, its uint8 ``[T, T, 3]`` overlay."""
    from avssl.tools.html import jpeg_uri

    cells = []
    for i, img in zip(idx, blended, strict=True):
        cells.append(
            f'<figure><img src="{jpeg_uri(clips.thumbs[i].numpy())}" alt="frame">'
            f'<img src="{jpeg_uri(img.numpy())}" alt="heatmap overlay">'
            + _caption(clips.rows[i])
            + "</figure>"
        )
    return (
        "<p>Heatmap of the clip's centre audio window over its centre frame (jet: red = "
        'strongest).</p><div class="row">' + "".join(cells) + "</div>"
    )
