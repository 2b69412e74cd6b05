"""``avssl query``: search an index with a sound, an image or a moment of a video.

usage: avssl query --index INDEX --checkpoint CKPT (--audio F | --image F | --video F [--at S])
                   [--target audio|visual] [-k 10] [--per-file] [--approx] [--rerank N]
                   [--json] [--html OUT.html [--force]]

The default target is the other modality (an ``--audio`` query finds pictures). A ``--video``
query uses its sound at ``--at`` to find pictures (``--target visual``, the default) or its
frame at ``--at`` to find sounds (``--target audio``). ``--at`` defaults to the middle of the
file. A model without a shared audio-visual space (l3) searches across modalities through the
CCA that ``avssl index`` fits on the index's own window pairs (:mod:`avssl.tools.index_cca`);
same-modality queries compare its own embeddings. ``--approx`` searches a faiss
HNSW index (optional extra ``faiss``; built on first use and cached beside the index) instead
of every window, for collections of millions of windows; with ``--per-file`` the search stays
exact (brute force). ``--rerank N`` (models with a map of locations: contrastive, avolnet;
cross-modal queries) re-scores the search's N best windows (with ``--per-file`` only the best
pooled window of each of the N best files, so a file is ranked by that window, not by its best
one by location) as ``evaluate.py retrieval`` scores a sound against a picture, by the
picture's best location, decoding each candidate window as ``avssl index`` did (a file changed
since is an error), and keeps the k best of them; N must be at least ``-k``. Output: a table
(default) or JSON as the last stdout line
(``{"query": {...}, "results": [{"path", "time", "modality", "score"}, ...]}``, with
``"cca": {"pairs", "fit_pairs", "components", "ridge"}`` after ``"query"`` for an l3 search
across modalities, ``"rerank": N`` after ``"query"``, the number of windows re-scored, and
each ``score`` the re-scored one when re-ranking); ``--html`` also writes a page with
thumbnails and audio players (an existing file only with ``--force``; its heading names the
CCA or the re-scoring). A hit whose file changed (size or modification time) or went missing
since it was indexed gets a ``note:`` line on stderr, also shown beside its media on the page.
Names starting with a dash are given as ``--audio=-name.wav``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from avssl.atomic_write import write_bytes
from avssl.cli import ArgumentParser, names_json, one_line, positive_int
from avssl.cli_checkpoint import load_command_model
from avssl.cli_outputs import (
    HTML_SUFFIXES,
    check_html_name,
    check_new_file,
    check_not_input,
    check_not_read,
)
from avssl.errors import AvsslError, MediaError
from avssl.tools.index import load_index, weights_hash
from avssl.tools.query import query_input, query_window, search, unit_embedding

OTHER = {"audio": "visual", "visual": "audio"}
THUMB_W = 160
MAX_CLIP_S = 3.0


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl query", description=__doc__.splitlines()[0])
    p.add_argument("--index", required=True, help="index directory made by avssl index")
    p.add_argument("--checkpoint", required=True, help="the checkpoint the index was built with")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="query with a sound (audio or video file)")
    src.add_argument("--image", help="query with a picture (image or video file)")
    src.add_argument("--video", help="query with a moment of a video")
    p.add_argument("--at", type=float, help="query window centre in s (default: the middle)")
    p.add_argument("--target", choices=("audio", "visual"), help="what to find")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--per-file", action="store_true", help="best window per file only")
    p.add_argument(
        "--approx", action="store_true", help="approximate search with faiss (large indexes)"
    )
    p.add_argument(
        "--rerank",
        type=positive_int,
        metavar="N",
        help="re-score the N best results by the picture's best location, as evaluate.py "
        "retrieval scores them, and keep the -k best (with --per-file: each of the N best "
        "files' best pooled window only; contrastive, avolnet; cross-modal queries; N >= -k; "
        "default: off)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--html", help="also write an HTML page of the results here")
    p.add_argument("--force", action="store_true", help="overwrite an existing --html file")
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda[:N]")
    return p


def _query_spec(args) -> tuple[str, str, str, str]:
    """``(path, flag, query modality, target modality)`` from the arguments."""
    if args.video is not None:
        target = args.target or "visual"
        return args.video, "--video", OTHER[target], target
    path, flag, modality = (
        (args.audio, "--audio", "audio")
        if args.audio is not None
        else (args.image, "--image", "visual")
    )
    return path, flag, modality, args.target or OTHER[modality]


def _cca_space(index, cfg, state, args, modality: str, target: str) -> dict | None:
    """The CCA record of ``index`` when a model without a shared space (l3) searches across
    modalities (checked to map a query: :func:`avssl.tools.index_cca.check_cca`), else None."""
    from avssl.models import method_class

    if method_class(cfg.model.method).shared_space or modality == target:
        return None
    from avssl.tools.index_cca import check_cca

    ckpt, out = shlex.quote(state["path"]), shlex.quote(args.index)
    return check_cca(index, f"avssl index --checkpoint {ckpt} --out {out}")


def main(argv: list[str] | None = None) -> int:
    """``avssl query``: print the best matches as a table or JSON; ``--html`` also writes a page."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.k < 1:
        raise AvsslError(f"-k must be at least 1, got {args.k}")
    if args.rerank is not None and args.rerank < args.k:
        parser.error(
            f"--rerank: {args.rerank} is less than -k {args.k}; the k results are the best of "
            "the N re-scored ones, so N must be at least k"
        )
    if args.html is not None:  # "" (an unset variable) is refused, not ignored
        check_html_name(args.html, "--html")
        check_new_file(args.html, args.force)
        check_not_input(args.html, args, HTML_SUFFIXES)
    if args.approx:
        from avssl.tools.ann import import_faiss

        import_faiss(args.index)  # fail before the slow part
        if args.per_file:
            print(
                "note: --per-file searches exactly (brute force); --approx ignored", file=sys.stderr
            )
    from avssl.train.runtime import resolve_device

    index = load_index(args.index)
    if args.html is not None:  # the indexed media are read for the page's thumbnails and clips
        media = (f["path"] for f in index.files)
        check_not_read(args.html, media, f"a media file of the index {args.index}")
    model, cfg, state = load_command_model(args.checkpoint, resolve_device(args.device, "--device"))
    index.check_checkpoint(weights_hash(model), state["path"], cfg)
    path, flag, modality, target = _query_spec(args)
    cca = _cca_space(index, cfg, state, args, modality, target)
    if args.rerank is not None:
        from avssl.tools.query_rerank import check_rerank

        check_rerank(model, cfg.model.method, state["path"], modality, target)
    if index.count(target) == 0:
        raise AvsslError(f"{args.index}: the index holds no {target} windows")
    info, time = query_window(path, modality, args.at, flag)
    if args.per_file:
        n = int(index.tensors[f"{target}_file"].unique().numel())
    else:
        n = index.count(target)
    k = args.k
    if k > n:
        what = f"files with {target}" if args.per_file else f"{target} windows"
        print(
            f"warning: -k {k} is more than the {n} {what} in the index; showing {n}",
            file=sys.stderr,
        )
        k = n
    device = next(model.parameters()).device
    asked = "--at" if args.at is not None else "the middle of the file at"
    x = query_input(cfg, path, modality, info, time, asked)
    q = unit_embedding(model, x, modality, device)
    out: dict = {"query": {"path": str(path), "modality": modality, "time": time, "target": target}}
    key = None
    if cca is not None:
        from avssl.tools.index_cca import cca_query

        q, key, out["cca"] = cca_query(index, q, modality), f"{target}_cca", cca
    if args.rerank is None:
        results = search(index, q, target, k, args.per_file, args.approx, key)
    else:
        from avssl.tools.query_rerank import rerank_search

        n = min(args.rerank, n)
        results, out["rerank"] = rerank_search(
            model, cfg, index, q, x, target, k, n, args.per_file, args.approx, device
        )
    out["results"] = results
    changed = _changed(index, results)
    for path, why in changed.items():
        print(f"note: {one_line(path)}: {why}", file=sys.stderr)
    if args.html is not None:
        _write_html(Path(args.html), out["query"], results, cfg, _how(out), changed)
    if args.json:
        print(names_json(out))
    else:
        _print_table(out["query"], results, _how(out))
    return 0


def _changed(index, results: list[dict]) -> dict[str, str]:
    """``{path: note}`` of the results' files that changed or went missing since they were
    indexed (:func:`avssl.tools.index_media.stamp_change`: one ``os.stat`` per file shown)."""
    from avssl.tools.index_media import stamp_change

    shown = {r["path"] for r in results}
    why = {f["path"]: stamp_change(f) for f in index.files if f["path"] in shown}
    after = "its hits were scored on the file as it was (run avssl index again)"
    return {path: f"{w}; {after}" for path, w in why.items() if w}


def _shown(path: str) -> str:
    """A path on one table row: a name holding a newline or another control character, or
    bytes that are not UTF-8, is JSON-escaped, as the JSON output and ``avssl index``'s lines
    give it."""
    return path if path.isprintable() else names_json(path)[1:-1]


def _print_table(query: dict, results: list[dict], how: str = "") -> None:
    at = "" if query["time"] is None else f" at {query['time']:.2f} s"
    head = f"{query['modality']} query {_shown(query['path'])}{at} -> {query['target']}"
    print(head + how)
    print(f"{'#':>3}  {'score':>8}  {'time':>8}  path")
    for i, r in enumerate(results, 1):
        t = "-" if r["time"] is None else f"{r['time']:.2f}"
        print(f"{i:>3}  {r['score']:>8.4f}  {t:>8}  {_shown(r['path'])}")


def _how(out: dict) -> str:
    """What the header says of a CCA space or of ``--rerank`` (nothing without either)."""
    if "cca" in out:
        c = out["cca"]
        return f" (through the index's CCA: {c['components']}-d, {c['pairs']} window pairs)"
    return "" if "rerank" not in out else f" (best {out['rerank']} re-scored by best location)"


def _media(path: str, modality: str, time: float | None, cfg) -> dict:
    """Thumbnail (visual) or short clip (audio) data URIs of one window; errors become text."""
    from avssl.data.media import probe
    from avssl.tools.html import jpeg_uri, wav_uri
    from avssl.tools.stream_io import audio_end, iter_frames_at, read_audio_padded

    try:
        info = probe(path, shown=modality == "visual")
        if modality == "visual":
            w, h = info.width or THUMB_W, info.height or THUMB_W
            size = (max(2, round(h * THUMB_W / w)), THUMB_W)
            return {"image": jpeg_uri(next(iter_frames_at(path, [time or 0.0], size, "AREA")))}
        d = cfg.data
        span = min(d.window, MAX_CLIP_S)
        wave = read_audio_padded(
            path, time - span / 2, span, d.sample_rate, audio_end(path, info.duration)
        )
        return {"audio": wav_uri(wave.numpy(), d.sample_rate)}
    except MediaError as err:
        return {"error": f"unavailable ({err.reason})"}


def _write_html(
    out: Path, query: dict, results: list[dict], cfg, how: str, changed: dict[str, str]
) -> None:
    """Write the page; ``changed`` (:func:`_changed`) notes the hits of changed files."""
    from avssl.tools.html import results_page

    qmedia = _media(query["path"], query["modality"], query["time"], cfg)
    media = [
        {**_media(r["path"], r["modality"], r["time"], cfg), "note": changed.get(r["path"])}
        for r in results
    ]
    # the heading reads "<modality> query -> <target>", as the table's first line
    heading = {**query, "target": query["target"] + how}
    page = results_page(heading, results, qmedia, media)
    # a name that is not UTF-8 shows its bytes as the JSON output does (caf\udce9.mp4)
    write_bytes(out, page.encode("utf-8", "backslashreplace"), make_parents=True)
