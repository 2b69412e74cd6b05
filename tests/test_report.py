"""``avssl report``: the HTML page of a run, its escaping, missing parts, and a headless render."""

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from bad_media import last_json
from conftest import TINY, MediaFactory
from PIL import Image

import train
from avssl import cli
from avssl.eval.cli import append_report
from avssl.tools.report_evals import flatten_scalars, parse_report_md
from avssl.tools.report_figures import curve_series
from avssl.tools.report_gallery import rank_queries, spread

ROOT = Path(__file__).resolve().parents[1]
XSS = "<script>alert(1)</script>"
XSS_FILE = "<img src=x onerror=alert(1)>.mp4"  # no "/" possible in a file name
ALL = ["curves", "evaluations", "gallery", "overlays", "config"]


def _train(base: Path, method: str) -> Path:
    sets = [*TINY, "train.steps=2", "train.eval_every=2", "train.log_every=1"]
    sets.append(f"train.runs_dir={base}")
    args = ["--config", str(ROOT / f"configs/{method}.yaml"), "--no-progress"]
    assert train.main(args + [a for s in sets for a in ("--set", s)]) == 0
    return next(base.iterdir())


@pytest.fixture(scope="module")
def full(tiny_cache, tmp_path_factory):
    """A tiny AVOL-Net run with evaluations, a hostile manifest and the report made of them."""
    base = tmp_path_factory.mktemp("report")
    run = _train(base / "runs", "avolnet")
    append_report(run / "report.md", "AVC accuracy (test)", {"accuracy": 0.625, "n": 16})
    append_report(run / "report.md", XSS, {"R@1": 0.25})
    (run / "eval").mkdir()
    result = {"a2v": {"R@1": 0.5}, "n": 4, "evaluated_at": "2026-12-06T10:00:00+00:00"}
    (run / "eval" / "retrieval.json").write_text(json.dumps(result))
    (run / "broken.json").write_text("{not json")
    media = MediaFactory(base)
    rows = []
    for cid, name, label in [
        (XSS, "a.mp4", XSS),
        ("clip-b", "b.mp4", "dog"),
        ("clip-c", XSS_FILE, XSS),
        ("clip-broken", "broken.mp4", "dog"),
    ]:
        if name == "broken.mp4":
            (base / name).write_bytes(b"")
        else:
            media(name, duration=2.5, size=(48, 48))
        rows.append({"id": cid, "video": name, "labels": [label], "split": "test"})
    media("val.mp4", duration=2.5, size=(48, 48))  # the gallery shows test clips only
    rows.append({"id": "clip-val", "video": "val.mp4", "labels": ["dog"], "split": "val"})
    manifest = base / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (base / "elsewhere.json").write_text(json.dumps({"R@5": 0.75}))  # an --out outside the run
    out = base / "page.html"
    argv = ["report", str(run), "-o", str(out), "--data", str(manifest), "--n-queries", "2"]
    return run, out, argv + ["-k", "3", "--results", str(base / "elsewhere.json")]


@pytest.fixture(scope="module")
def page(full):
    """The page and the summary of one run of the report (capsys is function-scoped)."""
    run, out, argv = full
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(argv) == 0
    return out.read_text(encoding="utf-8"), last_json(buf.getvalue())


def test_report_has_every_section(full, page):
    run, out, _ = full
    text, summary = page
    assert summary["report"] == str(out) and summary["sections"] == ALL
    assert summary["bytes"] == out.stat().st_size
    # report.md sections and JSON results become HTML tables; unreadable JSON is noted
    assert "<h3>AVC accuracy (test)</h3>" in text
    assert "<td>accuracy</td><td>0.6250</td>" in text and "<td>n</td><td>16</td>" in text
    assert "<h3>eval/retrieval.json</h3>" in text and "<td>a2v/R@1</td><td>0.5000</td>" in text
    assert "broken.json: skipped (not readable JSON" in text
    assert "elsewhere.json</h3>" in text and "<td>R@5</td><td>0.7500</td>" in text
    # gallery: 2 queries x top-3 of the 3 decodable clips (so each query meets its own clip)
    assert text.count('class="query"') == 2 and len(re.findall(r'alt="match \d"', text)) == 6
    assert text.count("(query's clip)") == 2
    assert len(re.findall(r'<audio controls preload="none" src="data:audio/wav;base64,', text)) == 2
    assert "1 clip(s) skipped" in text and "clip-broken" in text
    assert "3 of 4 test clips" in text and "clip-val" not in text
    # overlays: the heatmap over each of the 3 clips
    assert text.count('alt="heatmap overlay"') == 3
    assert "method: avolnet" in text  # the config, from config.yaml
    # the curves PNG decodes to the figure size
    uri = re.search(r'src="data:image/png;base64,([^"]+)" alt="training curves"', text).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(uri))).size == (1000, 360)


def test_same_label_marks(page):
    text, _ = page
    # queries are clips 0 ("<script>", label XSS) and 2 (clip-c, label XSS): both share a label
    # with each other and themselves, never with clip-b ("dog")
    for fig in re.findall(r"<figure[^>]*>.*?</figure>", text, flags=re.S):
        if 'alt="match' not in fig:
            continue
        hit = 'class="hit"' in fig
        assert hit == ("&#10003;" in fig)
        assert hit == ("clip-b" not in fig)


def test_strings_from_data_are_escaped(page):
    text, _ = page
    assert "<script" not in text.lower()  # the page has no script at all
    assert "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;.mp4" in text
    assert "<h3>&lt;script&gt;alert(1)&lt;/script&gt;</h3>" in text  # a report.md title


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [(k, v or "") for k, v in attrs if k in ("src", "href", "srcset", "data")]


def test_page_is_self_contained(page):
    parser = _Links()
    parser.feed(page[0])
    kinds = {(k, v.split(",")[0] if v.startswith("data:") else v[:1]) for k, v in parser.refs}
    assert kinds == {
        ("href", "#"),
        ("src", "data:image/png;base64"),
        ("src", "data:image/jpeg;base64"),
        ("src", "data:audio/wav;base64"),
    }


def test_never_overwrites_without_force(full, page, capsys):
    _, out, argv = full
    before = out.read_bytes()
    assert cli.main(argv) == 2
    assert "exists (pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    out2 = out.with_name("forced.html")
    out2.write_text("old")
    assert cli.main([*argv, "-o", str(out2), "--force", "--n-overlays", "1"]) == 0
    assert capsys.readouterr().out and out2.read_text().count('alt="heatmap overlay"') == 1


def test_missing_parts_are_notes(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")  # a run that has only just started
    assert cli.main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    assert summary["sections"] == [] and summary["report"] == str(run / "report.html")
    assert set(summary["skipped"]) == set(ALL)  # each with its reason, on stderr too
    err = captured.err.splitlines()
    assert len(err) == 5 and all(line.startswith("note: ") for line in err)
    text = (run / "report.html").read_text()
    for msg in ("no train or val rows yet", "No report.md", "No checkpoint", "no config to show"):
        assert msg in text
    # a corrupt checkpoint and a half-written metrics log: still a page, with notes
    (run / "config.yaml").write_text(f"name: {XSS}\n")
    (run / "best.pt").write_bytes(b"garbage")
    rows = [{"split": "val", "step": 2, "accuracy": 0.5}, {"split": "train", "step": 1}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"spl')
    assert cli.main(["report", str(run), "--force"]) == 0
    assert last_json(capsys.readouterr().out)["sections"] == ["curves", "config"]
    text = (run / "report.html").read_text()
    assert "Retrieval gallery skipped:" in text and "best.pt: not a PyTorch checkpoint" in text
    assert "1 unreadable line(s)" in text and "name: &lt;script&gt;" in text


def test_only_results_are_tables_and_each_once(full, tmp_path, capsys):
    # an evaluation's --out inside the run is also a report.md table: shown once; other JSON
    # files in the run (an index's meta.json, a cache's sidecars) are not results
    src, _, _ = full
    run = tmp_path / "run"
    shutil.copytree(src, run)
    result = {"R@1": 0.125, "weights_digest": "abc", "evaluated_at": "2026-12-06T10:01:02+00:00"}
    append_report(run / "report.md", "Retrieval (test)", result)
    (run / "retrieval-out.json").write_text(json.dumps(result))
    (run / "index").mkdir()
    (run / "index" / "meta.json").write_text(json.dumps({"format": 1, "checkpoint": {"a": 1}}))
    deep = tmp_path / "deep.json"  # nested beyond the parser's recursion limit
    deep.write_text('{"a":' * 5000 + "1" + "}" * 5000)
    shutil.copy(deep, run / "deep.json")
    walked = '{"evaluated_at": "t", "a":' + '{"a":' * 700 + "1" + "}" * 701  # parsed, too deep
    (run / "walked.json").write_text(walked)  # to flatten into a table
    out = tmp_path / "p.html"
    assert (
        cli.main(["report", str(run), "-o", str(out), "--n-queries", "1", "--n-overlays", "1"]) == 0
    )
    captured = capsys.readouterr()
    text = out.read_text()
    assert "<h3>Retrieval (test)</h3>" in text and "retrieval-out.json" not in text
    assert "meta.json" not in text and "<h3>eval/retrieval.json</h3>" in text
    assert "deep.json: skipped (not readable JSON: nested too deeply)" in text
    assert "walked.json: skipped (not readable JSON: nested too deeply)" in text
    # what was left out is said on stderr too, one line each
    assert "note: deep.json: skipped (not readable JSON: nested too deeply)" in captured.err
    assert cli.main(["report", str(run), "--results", str(deep)]) == 2
    assert "deep.json: not a results file (not readable JSON: nested too deeply)" in (
        capsys.readouterr().err
    )


def test_unreadable_best_falls_back_to_last(full, tmp_path, capsys):
    src, _, argv = full
    run = tmp_path / "run"
    shutil.copytree(src, run)
    shutil.copy(run / "best.pt", run / "last.pt")  # the same weights, readable
    good = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(good[: len(good) // 2])
    result = {"accuracy": 0.5, "weights_digest": "0123456789abcdef"}  # perhaps best.pt's
    append_report(run / "report.md", "AVC (evaluated on best.pt)", result)
    out = tmp_path / "p.html"
    data = argv[argv.index("--data") + 1]
    assert cli.main(["report", str(run), "-o", str(out), "--data", data, "--n-queries", "1"]) == 0
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    assert summary["sections"] == ALL and summary["skipped"] == {}
    text = out.read_text()
    assert "best.pt: corrupt or truncated checkpoint file; last.pt used instead" in text
    assert "note: " in captured.err and "last.pt used instead" in captured.err
    # whether a table's weights were best.pt's is unknown: not called stale
    assert "whether they are its weights is unknown" in text and "Stale:" not in text


def test_a_run_without_best_says_last_is_used(full, tmp_path, capsys):
    """A run stopped before its first validation has no best.pt: the report and an evaluation
    use its last.pt, and say so (they did without a word)."""
    import evaluate

    src, _, argv = full
    run = tmp_path / "run"
    shutil.copytree(src, run)
    (run / "best.pt").replace(run / "last.pt")
    out = tmp_path / "p.html"
    data = argv[argv.index("--data") + 1]
    assert cli.main(["report", str(run), "-o", str(out), "--data", data, "--n-queries", "1"]) == 0
    note = f"{run}: no best.pt (the run stopped before its first validation?); last.pt used"
    assert f"note: {note}" in capsys.readouterr().err.splitlines()
    assert note in out.read_text()
    from avssl.cli_checkpoint import note_checkpoint
    from avssl.train.checkpoint import load_checkpoint, load_model, no_best_note

    # the library says nothing (a Python user is not printed at): the commands give the note
    assert load_checkpoint(run)["path"] == str(run / "last.pt")
    load_model(run)
    assert capsys.readouterr() == ("", "")
    assert no_best_note(run) == note and no_best_note(run / "last.pt") is None
    assert no_best_note(src) is None and no_best_note(None) is None
    assert evaluate.main(["avc", "--checkpoint", str(run), "--data", data, "--no-progress"]) == 0
    assert capsys.readouterr().err.splitlines().count(f"note: {note}") == 1
    note_checkpoint(run)  # evaluate.py may read the config first: the note comes once
    assert capsys.readouterr().err == ""


def test_missing_run_dir_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli.main(["report", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {missing}: no such run directory\n"
    missing.mkdir()
    assert cli.main(["report", str(missing), "--results", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'r.json'}: no such results file\n"
    assert not (missing / "report.html").exists()
    # what the user names must be usable (a part the run lacks is only a note)
    (tmp_path / "r.json").write_text("[1, 2]")
    (tmp_path / "m.jsonl").write_text("{not json\n")
    cases = [
        (["--results", str(tmp_path / "r.json")], "r.json: not a results file (not a JSON object)"),
        (["--data", str(tmp_path / "m.jsonl")], "m.jsonl:1: not JSON"),
        (["--device", "gpu"], "--device: device 'gpu': use auto, cpu, cuda or cuda:N"),
    ]
    for extra, reason in cases:
        assert cli.main(["report", str(missing), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and reason in err and len(err.splitlines()) == 1, err
    assert not (missing / "report.html").exists()


def test_model_without_map_uses_cca_and_says_so(tiny_cache, tmp_path, capsys):
    run = _train(tmp_path / "runs", "l3")
    out = tmp_path / "l3.html"
    assert cli.main(["report", str(run), "-o", str(out), "--n-queries", "3", "-k", "2"]) == 0
    assert last_json(capsys.readouterr().out)["sections"] == ["curves", "gallery", "config"]
    text = out.read_text()
    assert "Method &#x27;l3&#x27; has no localisation map" in text
    assert text.count('class="query"') == 3 and len(re.findall(r'alt="match \d"', text)) == 6


# --- pure helpers against known answers and brute force ---------------------------------------


def test_parse_report_md_known_answer():
    md = "intro\n\n## A (test)\n\n| metric | value |\n|---|---|\n| acc | 0.5000 |\n| n | 4 |\n"
    md += "\n## B\n| k | v |\n|:--|--:|\n| x | y |\ntrailing text\n"
    assert parse_report_md(md) == [
        {
            "title": "A (test)",
            "header": ["metric", "value"],
            "rows": [["acc", "0.5000"], ["n", "4"]],
        },
        {"title": "B", "header": ["k", "v"], "rows": [["x", "y"]]},
    ]
    assert parse_report_md("| a | b |\n") == []


def test_curve_series_and_flatten():
    rows = [
        {"split": "train", "step": 2, "loss": 1.5},
        {"split": "val", "step": 2, "accuracy": 0.5, "loss": 9.0},
        {"split": "train", "step": 4, "loss": "nan?"},
        {"split": "train", "step": 6, "loss": 0.5},
        {"split": "train", "loss": 0.1},
    ]
    assert curve_series(rows, "train", "loss") == ([2.0, 6.0], [1.5, 0.5])
    assert curve_series(rows, "val", "accuracy") == ([2.0], [0.5])
    result = {"a2v": {"R@1": 0.25, "ranks": list(range(20))}, "n": 3, "x": None, "tta": [0.9, 1.0]}
    flat = flatten_scalars(result)  # short lists (e.g. TTA speeds) joined, long ones left out
    assert flat == [("a2v/R@1", "0.2500"), ("n", "3"), ("x", "-"), ("tta", "0.9, 1")]


def test_spread():
    assert spread(10, 4) == [0, 3, 6, 9] and spread(3, 8) == [0, 1, 2] and spread(0, 2) == []


def test_rank_queries_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 9))
        sim = rng.integers(0, 4, size=(n, n)).astype(float)  # many ties
        labels = [[str(x)] for x in rng.integers(0, 3, size=n)]
        queries = list(range(n))
        k = int(rng.integers(1, n + 1))
        for item in rank_queries(sim, labels, queries, k):
            q = item["query"]
            # brute force: rank of j = items scored higher, plus equal ones with a lower index
            ranks = {
                j: sum(
                    sim[q, i] > sim[q, j] or (sim[q, i] == sim[q, j] and i < j) for i in range(n)
                )
                for j in range(n)
            }
            expect = sorted(range(n), key=lambda j: ranks[j])[:k]
            assert [m["index"] for m in item["matches"]] == expect
            for m in item["matches"]:
                assert m["score"] == sim[q, m["index"]]
                assert m["same_label"] == (labels[q] == labels[m["index"]])
                assert m["same_clip"] == (m["index"] == q)


# --- headless browser ---------------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _render(binary: str, page: Path, png: Path, profile: Path) -> str:
    """Screenshot ``page`` in headless Chromium; returns its stderr (console messages included:
    with ``--enable-logging=stderr`` every console message is an ``INFO:CONSOLE`` line)."""
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        f"--screenshot={png}", "--window-size=1280,2000", page.resolve().as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    return proc.stderr


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_page_renders_in_headless_chromium(full, page, tmp_path):
    binary = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if binary is None:
        pytest.skip("no chromium binary (apt-get install chromium; .ci/run installs it)")
    # the detector sees a page's errors (else a pass below would mean nothing)
    bad = tmp_path / "bad.html"
    bad.write_text('<p>x</p><script>throw new Error("boom-123")</script>')
    errors = _console_errors(_render(binary, bad, tmp_path / "bad.png", tmp_path / "p1"))
    assert any("boom-123" in e for e in errors)

    shot = tmp_path / "report.png"
    stderr = _render(binary, full[1], shot, tmp_path / "p2")
    assert _console_errors(stderr) == []
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape == (2000, 1280, 3)
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    non_white = float((img < 240).any(axis=2).mean())
    assert colours > 200 and non_white > 0.05, (colours, non_white)
