"""``avssl report``: one self-contained static HTML page describing a training run.

usage: avssl report RUN_DIR [-o report.html] [--data MANIFEST] [--n-queries 4] [-k 4]
                    [--n-overlays 4] [--max-clips 200] [--results FILE ...] [--device cpu]
                    [--force]

The page holds, when the run has them: the training curves (``metrics.jsonl``), every evaluation
table (``report.md`` sections, ``*.json`` results inside RUN_DIR and ``--results`` files), an
audio -> visual retrieval gallery of test clips and heatmap overlays computed from ``best.pt``
(else ``last.pt``, also when ``best.pt`` cannot be read) on the run's data, and the run's
config. Images and audio are embedded as data URIs; the page has no script and loads nothing.
Parts the run lacks are replaced by a note, also said on stderr (``note: ...``), as are each
results file that cannot be read and a fall-back from ``best.pt`` to ``last.pt``. Every string
that comes from files or data is HTML-escaped. The last stdout line is JSON: ``{"report": path,
"sections": [...], "skipped": {section: reason}, "bytes": N}``, the sections that have content
and why the others have none.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from avssl.atomic_write import write_bytes
from avssl.cli import ArgumentParser, dash_paths_last, int_at_least, one_line
from avssl.cli_outputs import (
    HTML_SUFFIXES,
    check_html_name,
    check_new_file,
    check_not_input,
    check_not_read,
)
from avssl.errors import AvsslError, InputOverwriteError
from avssl.tools import report_evals as evals
from avssl.tools import report_figures as figures
from avssl.tools.report_gallery_html import gallery_html, overlays_html
from avssl.tools.report_page import render_page

esc = html.escape


@dataclass
class Section:
    """HTML body of one section; ``ok`` is False when it only holds a note, ``reason`` says why,
    ``notes`` what else it left out (each also said on stderr)."""

    body: str
    ok: bool = True
    reason: str | None = None
    notes: list[str] = field(default_factory=list)


def note(text: str) -> Section:
    """A section holding only ``text`` as a note (``ok=False``)."""
    return Section(f'<p class="note">{esc(text)}</p>', ok=False, reason=text)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table with every cell escaped."""
    head = "".join(f"<th>{esc(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def curves_section(run_dir: Path) -> Section:
    """The training curves of ``metrics.jsonl``, or a note when it is missing or has none."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return note("No metrics.jsonl yet: no training curves.")
    rows, bad = figures.read_metrics(path)
    png = figures.curves_png(rows)
    if png is None:
        damaged = f" ({bad} unreadable line(s) skipped: the file is damaged)" if bad else ""
        return note(f"metrics.jsonl has no train or val rows yet{damaged}: no training curves.")
    body = f'<img src="{figures.png_uri(png)}" alt="training curves" width="1000">'
    if bad:
        body += f'<p class="note">{bad} unreadable line(s) of metrics.jsonl skipped.</p>'
    return Section(body)


def evaluations_section(run_dir: Path, extra: list[Path]) -> Section:
    """Tables of ``report.md`` and of the evaluation results saved as JSON in ``run_dir`` and
    ``extra`` (:func:`avssl.tools.report_evals.evaluation_tables`), with notes on stale tables
    and skipped files. ``ok`` only when a table was found."""
    tables, notes = evals.evaluation_tables(run_dir, extra)
    parts = []
    for t in tables:
        warn = f'<p class="note">{esc(t["stale"])}</p>' if t["stale"] else ""
        parts.append(f"<h3>{esc(t['title'])}</h3>{warn}" + html_table(t["header"], t["rows"]))
    parts += [f'<p class="note">{esc(n)}</p>' for n in notes]
    if not (run_dir / "report.md").is_file():
        parts.append(
            '<p class="note">No report.md yet (run evaluate.py ... --checkpoint RUN_DIR).</p>'
        )
    if not tables:
        parts.append('<p class="note">No evaluation results found.</p>')
    reason = None if tables else "no evaluation results found"
    return Section("\n".join(parts), ok=bool(tables), reason=reason, notes=notes)


def model_sections(run_dir: Path, args, out: Path) -> tuple[Section, Section, object | None]:
    """Gallery and overlay sections, and the checkpoint's config (None without a checkpoint).

    Raises:
        InputOverwriteError: ``out`` is the manifest read (found through the checkpoint's config
            without ``--data``) or one of its media files.
    """
    from avssl.data.manifest import read_manifest, resolve
    from avssl.data.source import manifest_path
    from avssl.eval.cli import use_data
    from avssl.tools import report_gallery as gal
    from avssl.train.runtime import resolve_device

    if not any((run_dir / n).is_file() for n in ("best.pt", "last.pt")):
        msg = "No checkpoint (best.pt or last.pt) yet: no {}."
        return note(msg.format("retrieval gallery")), note(msg.format("overlays")), None
    cfg = None
    try:
        device = resolve_device(args.device, "--device")
        model, cfg, state, fell_back = gal.load_run_model(run_dir, device)
        use_data(cfg, args.data)
        manifest = manifest_path(cfg.data, progress=False)
        rows = read_manifest(manifest)
        check_not_read(out, [manifest], "the manifest of the run's data")
        media = (resolve(manifest, p) for r in rows for p in (r.visual, r.audio) if p)
        check_not_read(out, media, f"a media file listed in {manifest}")
        test_rows = [r for r in rows if r.split == "test"]
        clips = gal.centre_clips(test_rows, manifest, cfg.data, args.max_clips)
        if len(clips.rows) < 2:
            first = f"; first skipped: {clips.skipped[0][1]}" if clips.skipped else ""
            raise AvsslError(
                f"{manifest}: {len(clips.rows)} usable test clip(s), need at least 2{first}"
            )
        train = None
        if not model.shared_space:  # CCA is fitted on training clips
            train_rows = [r for r in rows if r.split == "train"]
            train = gal.centre_clips(train_rows, manifest, cfg.data, args.max_clips, "train")
        sim = gal.a2v_similarity(model, cfg.model.method, clips, train, device)
        queries = gal.spread(len(clips.rows), args.n_queries)
        ranked = gal.rank_queries(sim, [r.labels for r in clips.rows], queries, args.k)
        source = f"<p>Checkpoint: {esc(Path(state['path']).name)}, data: {esc(str(manifest))}</p>"
        if train is not None:
            source += (
                f"<p>CCA fitted on {len(train.rows)} evenly spread training clips "
                "(evaluate.py retrieval fits it on the whole training split).</p>"
            )
        if fell_back:
            source = f'<p class="note">{esc(fell_back)}</p>' + source
        gallery = Section(
            source + gallery_html(clips, ranked, cfg.data.sample_rate, len(test_rows)),
            notes=[fell_back] if fell_back else [],
        )
        blended = gal.overlay_frames(model, clips, args.n_overlays, device)
    except InputOverwriteError:
        raise
    except (AvsslError, OSError) as err:
        why = f"{err.filename}: {err.strerror}" if getattr(err, "filename", None) else str(err)
        return note(f"Retrieval gallery skipped: {why}"), note(f"Overlays skipped: {why}"), cfg
    if blended is None:
        overlays = note(
            f"Method {cfg.model.method!r} has no localisation map, so there are no overlays "
            "(avolnet, or contrastive with model.spatial=true, have one)."
        )
    else:
        overlays = Section(overlays_html(clips, *blended))
    return gallery, overlays, cfg


def config_section(run_dir: Path, cfg) -> Section:
    """The run's ``config.yaml``, else the checkpoint's config ``cfg``, else a note."""
    path = run_dir / "config.yaml"
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        return Section(f"<p>{esc(str(path))}</p><pre>{esc(text)}</pre>")
    if cfg is not None:
        import yaml

        from avssl.config import to_dict

        text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
        return Section(
            f"<p>config.yaml is missing; the checkpoint's config:</p><pre>{esc(text)}</pre>"
        )
    return note("No config.yaml and no readable checkpoint: no config to show.")


RUN_FILES = ("config.yaml", "metrics.jsonl", "best.pt", "last.pt")  # any one makes a run


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl report", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run directory made by train.py")
    p.add_argument("-o", "--output", help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--data", help="manifest (default: the data the run was trained on)")
    one = int_at_least(1)
    p.add_argument("--n-queries", type=one, default=4, help="gallery audio queries (default 4)")
    p.add_argument("-k", type=one, default=4, help="matches shown per query (default 4)")
    p.add_argument("--n-overlays", type=one, default=4, help="overlay thumbnails (default 4)")
    # a gallery ranks a clip's audio against the other clips' pictures: at least two
    p.add_argument(
        "--max-clips", type=int_at_least(2), default=200, help="test clips searched (default 200)"
    )
    p.add_argument("--results", nargs="*", default=[], help="more evaluation JSON files")
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda[:N]")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return p


def main(argv: list[str] | None = None) -> int:
    """``avssl report``: write the HTML page; the last stdout line is a JSON summary."""
    parser = _parser()  # a run folder may start with a dash
    args = parser.parse_args(dash_paths_last(parser, list(sys.argv[1:] if argv is None else argv)))
    run_dir = Path(args.run_dir)
    if not run_dir.exists():
        raise AvsslError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise AvsslError(f"{run_dir}: not a directory")
    named = args.output is not None  # as typed: "" or a trailing "/" is refused, not reread
    out = Path(args.output) if named else run_dir / "report.html"
    check_html_name(args.output if named else out, "-o")
    check_new_file(out, args.force)
    check_not_input(out, args, HTML_SUFFIXES)
    extra = [Path(p) for p in args.results]
    for path in extra:  # what the user names must be usable; what the run lacks is a note
        if path.is_dir():
            raise AvsslError(f"{path}: --results names a folder, not a results file")
        if not path.is_file():
            raise AvsslError(f"{path}: no such results file")
        if problem := evals.read_json_object(path)[1]:
            raise AvsslError(f"{path}: not a results file ({problem})")
    if args.data:
        from avssl.config import DataConfig
        from avssl.data.manifest import read_manifest
        from avssl.data.source import manifest_path

        read_manifest(manifest_path(DataConfig(root=args.data)))
    from avssl.train.runtime import resolve_device

    resolve_device(args.device, "--device")
    if not any((run_dir / name).is_file() for name in RUN_FILES):
        raise AvsslError(
            f"{run_dir}: not a run directory (none of the files train.py writes: "
            f"{', '.join(RUN_FILES)}); nothing written"
        )

    gallery, overlays, cfg = model_sections(run_dir, args, out)
    sections = {
        "curves": curves_section(run_dir),
        "evaluations": evaluations_section(run_dir, extra),
        "gallery": gallery,
        "overlays": overlays,
        "config": config_section(run_dir, cfg),
    }
    # a folder name that is not UTF-8 (legal on Linux) is shown backslash-escaped
    data = render_page(run_dir, sections).encode("utf-8", errors="backslashreplace")
    write_bytes(out, data, make_parents=True)
    done = [key for key, sec in sections.items() if sec.ok]
    skipped = {key: sec.reason for key, sec in sections.items() if not sec.ok}
    for text in [*skipped.values(), *(n for sec in sections.values() for n in sec.notes)]:
        print(f"note: {one_line(text)}", file=sys.stderr)
    summary = {"report": str(out), "sections": done, "skipped": skipped, "bytes": len(data)}
    print(json.dumps(summary))
    return 0
