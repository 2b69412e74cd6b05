"""What an evaluation's ``report.md`` table records and how it is written: the data read, TTA,
the checkpoint's step and weights digest, the time, odd folder names and odd cell values."""

import datetime
import json
import shutil
from pathlib import Path

import pytest
from bad_media import last_json
from conftest import TINY

import evaluate
import train
from avssl import cli
from avssl.data.source import manifest_path
from avssl.eval.cli import append_report
from avssl.eval.provenance import qualified_title
from avssl.tools.report_evals import flatten_scalars, parse_report_md
from avssl.train.checkpoint import checkpoint_config, load_checkpoint, load_model, weights_digest

ODD_NAME = "run_\udcff"  # the bytes b"run_\xff": a legal Linux folder name that is not UTF-8


@pytest.fixture(scope="module")
def run(tiny_cache, tmp_path_factory) -> Path:
    """A tiny trained run (default method) and nothing evaluated yet."""
    base = tmp_path_factory.mktemp("provenance")
    sets = [*TINY, "train.steps=2", "train.eval_every=2", f"train.runs_dir={base}"]
    assert train.main([a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    return next(base.iterdir())


def _other_manifest(run: Path, path: Path) -> Path:
    """The test rows of the run's synthetic world, as another manifest with absolute paths."""
    own = manifest_path(checkpoint_config(load_checkpoint(run)).data, progress=False)
    rows = []
    for line in own.read_text().splitlines():
        row = json.loads(line)
        if row["split"] == "test":
            for key in ("video", "audio"):
                if row.get(key):
                    row[key] = str((own.parent / row[key]).resolve())
            rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _evaluate(capsys, *argv: str) -> dict:
    assert evaluate.main(["avc", *argv, "--device", "cpu", "--no-progress"]) == 0
    return last_json(capsys.readouterr().out)


def test_result_and_table_record_data_tta_step_digest_and_time(run, tmp_path, capsys):
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    plain = _evaluate(capsys, "--checkpoint", str(run))
    other = _other_manifest(run, tmp_path / "other" / "manifest.jsonl")
    out = tmp_path / "res.json"
    argv = ["--checkpoint", str(run), "--data", str(other), "--audio-tta", "0.2"]
    moved = _evaluate(capsys, *argv, "--out", str(out))
    assert json.loads(out.read_text()) == moved

    model, cfg, state = load_model(run)
    own = manifest_path(cfg.data, progress=False).resolve()
    assert plain["data"] == str(own) and plain["own_data"] is True
    assert moved["data"] == str(other.resolve()) and moved["own_data"] is False
    for res in (plain, moved):
        assert res["step"] == state["step"] == 2
        assert res["weights_digest"] == weights_digest(model)
        at = datetime.datetime.fromisoformat(res["evaluated_at"])
        assert before <= at <= datetime.datetime.now(datetime.UTC)

    first, second = parse_report_md((run / "report.md").read_text())[-2:]
    assert first["title"] == "AVC accuracy (test)"
    assert second["title"] == "AVC accuracy (test, data=other/manifest.jsonl, audio TTA 0.2)"
    rows = dict(second["rows"])
    speeds = ", ".join(f"{s:.4g}" for s in moved["audio_tta"])
    assert len(moved["audio_tta"]) == 9 and rows["audio_tta"] == speeds
    assert rows["data"] == str(other.resolve()) and rows["own_data"] == "False"
    assert rows["step"] == "2" and rows["weights_digest"] == moved["weights_digest"]
    assert rows["evaluated_at"] == moved["evaluated_at"]
    assert dict(flatten_scalars(moved))["audio_tta"] == speeds  # avssl report's JSON tables


def test_title_qualifiers():
    class Args:
        audio_tta, adapt_bn = 0.0, False

    args = Args()
    own = {"data": "/d/avd2x2/manifest.jsonl", "own_data": True}
    assert qualified_title("AVC accuracy (test)", own, args) == "AVC accuracy (test)"
    args.adapt_bn = True
    other = {"data": "/d/avd3x3/manifest.jsonl", "own_data": False}
    title = qualified_title("Localisation (vggss, test)", other, args)
    assert title == "Localisation (vggss, test, data=avd3x3/manifest.jsonl, adapt-bn)"
    args.adapt_bn, args.audio_tta = False, 0.15
    assert qualified_title("Retrieval", {}, args) == "Retrieval (audio TTA 0.15)"
    args.precision = "bf16"  # scores differ a little from fp32's
    assert qualified_title("Retrieval", {}, args) == "Retrieval (audio TTA 0.15, bf16)"
    # other views of one radius are other numbers (they shared the title); the default is not named
    args.audio_tta_views = 5
    assert qualified_title("Retrieval", {}, args) == "Retrieval (audio TTA 0.15 in 5 views, bf16)"
    args.audio_tta_views = 9
    assert qualified_title("Retrieval", {}, args) == "Retrieval (audio TTA 0.15, bf16)"


def test_title_names_the_options_that_change_the_numbers():
    """Three retrieval tables of one checkpoint (plain, with a gallery, another CCA) shared one
    title in report.md; so did avc with and without --cohort or --recalibrate."""
    from argparse import Namespace

    plain = Namespace(audio_tta=0.0, adapt_bn=False, windows=4, recalibrate=None, cohort=0)
    assert qualified_title("AVC accuracy (test)", {}, plain) == "AVC accuracy (test)"
    centred = Namespace(**{**vars(plain), "cohort": 512, "cohort_top": 50, "windows": 2})
    assert qualified_title("AVC accuracy (test)", {}, centred) == (
        "AVC accuracy (test, cohort 512 top 50, 2 windows)"
    )
    again = Namespace(**{**vars(plain), "recalibrate": "train"})
    assert qualified_title("AVC accuracy (test)", {}, again) == (
        "AVC accuracy (test, threshold from train)"
    )
    ret = Namespace(gallery="/d/avd16/gallery.jsonl", cca_dim=128, cca_ridge=1e-3, seed=None)
    assert qualified_title("Retrieval (test)", {}, ret) == (
        "Retrieval (test, gallery=avd16/gallery.jsonl)"
    )
    ret.gallery, ret.cca_dim, ret.cca_ridge = None, 32, 0.0
    assert qualified_title("Retrieval (test)", {}, ret) == "Retrieval (test, CCA 32, ridge 0)"
    probe = Namespace(seed=2)
    assert qualified_title("Sound classification (esc50)", {}, probe) == (
        "Sound classification (esc50, seed 2)"
    )


def test_title_names_classify_and_sync_options_off_their_defaults():
    """classify with another --pool or --hop (or --init-seed), and sync with another
    --max-offset or --times, shared one title in report.md with the default run."""
    from argparse import Namespace

    title = "Sound classification (esc50, model, stratified group 5-fold)"
    # as classify leaves them: network features at their defaults, or clip statistics (None)
    for pool, hop in (("mean", 0.5), (None, None)):
        plain = Namespace(pool=pool, hop=hop, seed=0, init_seed=None)
        assert qualified_title(title, {}, plain) == title
    other = Namespace(pool="max", hop=0.25, seed=0, init_seed=None)
    assert qualified_title(title, {}, other) == f"{title[:-1]}, max pool, hop 0.25 s)"
    drawn = Namespace(pool="mean", hop=0.5, seed=1, init_seed=1)  # --init-seed as --seed
    assert qualified_title(title, {}, drawn) == f"{title[:-1]}, seed 1)"
    drawn.init_seed = 3
    assert qualified_title(title, {}, drawn) == f"{title[:-1]}, seed 1, init seed 3)"
    # other groups are other folds; the pattern was in neither the title nor the JSON
    grouped = Namespace(pool=None, hop=None, seed=0, init_seed=None, group_regex=r"^(\d+)_")
    assert qualified_title(title, {}, grouped) == f"{title[:-1]}, grouped by ^(\\d+)_)"

    sync = Namespace(max_offset=0.5, times=8, seed=0)
    assert qualified_title("Synchronisation (test)", {}, sync) == "Synchronisation (test)"
    sync.max_offset, sync.times = 1.2, 16
    assert qualified_title("Synchronisation (video)", {}, sync) == (
        "Synchronisation (video, max offset 1.2 s, 16 frame times)"
    )


def test_sync_title_names_the_video(run, media_factory, capsys):
    # "Synchronisation (video)" was the title of every video's table
    video = media_factory("clip.mp4", duration=2.0, size=(48, 64))
    argv = ["sync", "--checkpoint", str(run), "--video", str(video), "--no-progress"]
    assert evaluate.main([*argv, "--max-offset", "0.2"]) == 0
    capsys.readouterr()
    titles = [t["title"] for t in parse_report_md((run / "report.md").read_text())]
    want = f"Synchronisation (video={video.parent.name}/clip.mp4, max offset 0.2 s)"
    assert titles[-1] == want


def test_folder_name_not_utf8_and_stale_tables(run, tmp_path, capsys):
    odd = tmp_path / ODD_NAME
    odd.mkdir()
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.jsonl"):
        shutil.copy(run / name, odd / name)
    out = tmp_path / "res.json"
    res = _evaluate(capsys, "--checkpoint", str(odd), "--out", str(out))
    assert json.loads(out.read_text())["checkpoint"] == str(odd / "best.pt")
    tables = parse_report_md((odd / "report.md").read_text(encoding="utf-8"))
    assert [t["title"] for t in tables] == ["AVC accuracy (test)"]
    assert dict(tables[0]["rows"])["checkpoint"] == str(tmp_path / "run_\\udcff" / "best.pt")

    # a table of other weights (e.g. of last.pt before training went on) is marked stale
    append_report(odd / "report.md", "AVC accuracy (test)", {**res, "weights_digest": "0" * 16})
    page = tmp_path / "page.html"
    assert cli.main(["report", str(odd), "-o", str(page), "--n-queries", "2"]) == 0
    assert last_json(capsys.readouterr().out)["report"] == str(page)
    text = page.read_text(encoding="utf-8")
    assert "run_\\udcff" in text
    assert text.count("Stale: evaluated weights") == 1
    assert f"Stale: evaluated weights {'0' * 16} are not" in text


def test_cells_with_pipes_breaks_and_none_survive_the_table(tmp_path):
    result = {
        "checkpoint": "/runs/exp|lr=1e-3/best.pt",
        "note": "two\nlines|and\r\na pipe",
        "literal": "a\\|b",
        "accuracy_hard": None,
        "nan": float("nan"),
        "nested": {"k|ey": 0.5},
        "long": list(range(50)),
        "empty": [],
        "items": [{"id": "x"}],
    }
    append_report(tmp_path / "report.md", "Odd | title\nhere", result)
    (table,) = parse_report_md((tmp_path / "report.md").read_text())
    assert table["title"] == "Odd | title here"
    assert table["header"] == ["metric", "value"]
    assert table["rows"] == [
        ["checkpoint", "/runs/exp|lr=1e-3/best.pt"],
        ["note", "two lines|and a pipe"],
        ["literal", "a\\|b"],
        ["accuracy_hard", "-"],
        ["nan", "-"],
        ["nested/k|ey", "0.5000"],
    ]
    # avssl report's JSON tables keep and leave out the same entries
    assert [key for key, _ in flatten_scalars(result)] == [row[0] for row in table["rows"]]
