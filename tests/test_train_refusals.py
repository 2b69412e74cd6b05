"""What an audit of ``train.py`` found it let through, each now refused in one line or fixed.

A config whose YAML aliases nest a list nine deep (its error took 100 s and 12 GB), a learning
rate too large for a float32 step (a traceback), hard negatives no clip has room for (trained
without any, silently), a batch larger than the training rows (refused only after decoding
every clip), manifest ids and times of the wrong type (``null`` became the id ``"None"``), a
second Ctrl-C (ignored until the step ended), partial temporary files after a failed write, an
executable ``config.yaml``, a broken symbolic link as ``--run-dir``, a resume asked to train
fewer steps than it had, and more audio time spans than frames (a 6 GB head, then the kernel's
out-of-memory killer).
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest
import torch
from bad_media import last_json

import train
from avssl.config import load_config
from avssl.data.manifest import Row, row_from_json, write_manifest
from avssl.errors import AvsslError, ConfigError, ManifestError
from avssl.models import build_model
from avssl.train import checkpoint, preflight
from avssl.train.cli import check_model_config
from avssl.train.resume import cut_metrics
from avssl.train.run_dir import prepare_run_dir
from avssl.train.signals import StopFlag


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("error")]
    assert len(lines) == 1, err
    return lines[0]


def test_yaml_aliases_nested_nine_deep_give_a_short_error_at_once(tmp_path, capsys):
    chain, prev = '[&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', "a0"
    for i in range(1, 9):  # 9**9 strings if written out
        chain += f", &a{i} [" + ",".join([f"*{prev}"] * 9) + "]"
        prev = f"a{i}"
    path = tmp_path / "laughs.yaml"
    path.write_text(f"name: {chain}]\n", encoding="utf-8")
    assert train.main(["--config", str(path)]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"error: {path}: name: expected a string, got [")
    assert len(line) < 300, line


def test_learning_rate_too_large_for_the_step_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"^train\.lr: must be at most 1e\+30, got 1e\+300$"):
        load_config(None, ["train.lr=1e300"])


def test_a_config_path_that_is_no_regular_file_says_so(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"fifo: not a regular file$"):
        load_config(fifo)


def test_more_audio_time_spans_than_frames_are_refused_before_building():
    cfg = load_config(None, ["model.audio_time_bins=100000"])
    with pytest.raises(ConfigError, match=r"^model\.audio_time_bins: 100000 is more spans than"):
        build_model(cfg.model, cfg.data, cfg.loss)
    cfg = load_config(None, ["model.audio_time_bins=49"])  # 49 frames in 1 s at hop 320
    build_model(cfg.model, cfg.data, cfg.loss)
    # the same message where train.py first builds it, counting parameters on the meta device
    cfg = load_config(None, ["model.audio_time_bins=100000"])
    with pytest.raises(ConfigError, match=r"^model\.audio_time_bins: 100000 is more spans than"):
        check_model_config(cfg)


@pytest.mark.parametrize(
    "sets,setting",
    [
        (["data.min_shift=5"], "loss.hard_negatives"),
        (["model.method=avenet", "data.min_shift=1.6"], "data.hard_fraction"),
    ],
)
def test_hard_negatives_no_clip_has_room_for_are_refused_before_decoding(
    sets, setting, tiny_train_args, tmp_path, capsys, monkeypatch
):
    import avssl.train.loop as loop

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(loop, "load_split", no_decoding)
    run = tmp_path / "run"
    assert train.main([*tiny_train_args(*sets), "--run-dir", str(run)]) == 2
    line = _one_error(capsys)  # the tiny world's clips last 2.5 s
    reason = f"no training clip is long enough for a hard negative ({setting})"
    assert f"manifest.jsonl: {reason}" in line
    assert not run.exists()


def test_hard_negatives_turned_off_need_no_room():
    cfg = load_config(None, ["data.min_shift=5", "loss.hard_negatives=false"])
    assert preflight.hard_negative_error(cfg, [2.5, 2.5], "m") is None
    cfg = load_config(None, ["model.method=avolnet", "loss.pair_negatives=batch"])
    assert preflight.hard_negative_error(cfg, [1.0], "m") is None
    cfg = load_config(None, ["data.min_shift=1.0"])  # a clip of window + min_shift has room
    assert preflight.hard_negative_error(cfg, [1.5, 2.0], "m") is None
    assert "the longest is 1.5 s" in preflight.hard_negative_error(cfg, [1.5, 1.2], "m")


def test_hard_negatives_checked_on_decoded_clips_when_rows_have_no_end(
    media_factory, tiny_train_args, tmp_path, capsys
):
    rows = []
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            media_factory(f"{split}{i}.mp4", duration=1.5, size=(36, 36))
            rows.append(Row(id=f"{split}{i}", video=f"{split}{i}.mp4", split=split))
    write_manifest(tmp_path / "manifest.jsonl", rows)
    run = tmp_path / "run"
    args = tiny_train_args(f"data.root={tmp_path}")
    assert train.main([*args, "--run-dir", str(run)]) == 2
    line = _one_error(capsys)
    assert "no training clip is long enough for a hard negative (loss.hard_negatives)" in line
    assert "data.window + data.min_shift is 2 s" in line and not run.exists()


def test_a_batch_larger_than_the_training_rows_is_refused_before_decoding(
    tiny_train_args, tmp_path, capsys, monkeypatch
):
    import avssl.train.loop as loop

    monkeypatch.setattr(loop, "load_split", lambda *a, **k: pytest.fail("decoded"))
    run = tmp_path / "run"
    assert train.main([*tiny_train_args("train.batch_size=13"), "--run-dir", str(run)]) == 2
    line = _one_error(capsys)  # the tiny world has 12 training clips
    assert line.endswith("12 training rows cannot fill one batch of 13 per process; lower "
                         "train.batch_size")  # fmt: skip
    assert not run.exists()


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"id": None}, "'id' must be a string, not null"),
        ({"id": [1, 2]}, "'id' must be a string, not [1, 2]"),
        ({"id": True}, "'id' must be a string, not true"),
        ({"id": {"x": 1}}, "'id' must be a string, not {\"x\": 1}"),
        ({"id": " "}, "'id' must not be blank"),
        ({"start": True}, "'start' must be a number of seconds, not true"),
        ({"end": [3]}, "'end' must be a number of seconds, not [3]"),
        ({"domain": ["x"]}, "'domain' must be a string, not [\"x\"]"),
    ],
)
def test_manifest_ids_domains_and_times_of_the_wrong_type_are_refused(fields, message):
    with pytest.raises(ManifestError) as err:
        row_from_json({"id": "a", "video": "a.mp4", **fields}, "m.jsonl:3")
    assert str(err.value).startswith("m.jsonl:3: row ") and str(err.value).endswith(message)


def test_manifest_whole_number_ids_and_domains_still_read_as_text():
    row = row_from_json({"id": 7, "video": "a.mp4", "domain": 2, "start": 1})
    assert (row.id, row.domain, row.start) == ("7", "2", 1.0)


def test_a_second_sigint_stops_at_once_a_sigterm_never_does():
    flag = StopFlag()
    flag._handle(signal.SIGTERM, None)
    flag._handle(signal.SIGTERM, None)  # a launcher's after the user's: the step still ends
    assert flag.signum == signal.SIGTERM
    flag._handle(signal.SIGINT, None)  # the first Ctrl-C sets nothing new
    assert flag.signum == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        flag._handle(signal.SIGINT, None)
    flag.finishing()  # writing the checkpoint the run stops with: that one is let finish
    flag._handle(signal.SIGINT, None)


def test_a_failed_checkpoint_write_keeps_the_old_one_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_checkpoint(path, {"step": 1})

    def half_then_fail(obj, f):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # a second Ctrl-C while writing

    monkeypatch.setattr(checkpoint.torch, "save", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert checkpoint.load_checkpoint(path)["step"] == 1


def test_a_failed_metrics_cut_keeps_the_log_and_no_partial_file(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    log.write_text(json.dumps({"step": 1}) + "\n" + json.dumps({"step": 5}) + "\n")

    def refuse(*args):
        raise PermissionError(1, "Operation not permitted", str(log))

    monkeypatch.setattr(os, "replace", refuse)  # the rename that ends every atomic write
    with pytest.raises(PermissionError):
        cut_metrics(log, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
    assert log.read_text().count("\n") == 2


def test_run_config_is_not_made_executable(tmp_path):
    old = os.umask(0o022)
    try:
        cfg = load_config(None, [f"train.runs_dir={tmp_path}"])
        run, _ = prepare_run_dir(cfg, None)
    finally:
        os.umask(old)
    mode = stat.S_IMODE((run / "config.yaml").stat().st_mode)
    assert mode == 0o644, oct(mode)


def test_a_broken_symbolic_link_as_run_dir_is_named_as_such(tmp_path):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "nowhere")
    cfg = load_config(None)
    with pytest.raises(AvsslError, match=r"run directory is a broken symbolic link \(to .*nowhere"):
        prepare_run_dir(cfg, str(link))
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_runs_dir_a_broken_link_is_refused_not_searched_forever(tmp_path):
    # runs_dir a link to nothing (scratch unmounted): mkdir raised FileExistsError for every
    # name, read as "taken", so prepare_run_dir tried name-2, name-3, ... without end
    import subprocess
    import sys

    link = tmp_path / "runs"
    link.symlink_to(tmp_path / "nowhere")
    code = (
        "from avssl.config import load_config\n"
        "from avssl.train.run_dir import prepare_run_dir\n"
        f"cfg = load_config(None, ['train.runs_dir={link}'])\n"
        "prepare_run_dir(cfg, None)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("prepare_run_dir did not return")
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("avssl.errors.AvsslError: ") and "run directory cannot be made" in last
    assert f"{link} is a broken symbolic link (to {tmp_path / 'nowhere'})" in last, last
    assert list(tmp_path.iterdir()) == [link]  # nothing made
    with pytest.raises(AvsslError, match=r"cannot be made: .*runs is a broken symbolic link"):
        prepare_run_dir(load_config(None), str(link / "a" / "b"))  # not "exists, not empty"


def test_resume_with_fewer_steps_than_done_is_refused_and_config_kept(
    tiny_train_args, tmp_path, capsys
):
    run = tmp_path / "run"
    args = tiny_train_args("train.steps=2", "train.eval_every=2")
    assert train.main([*args, "--run-dir", str(run)]) == 0
    assert last_json(capsys.readouterr().out)["step"] == 2
    before = (run / "config.yaml").read_bytes()
    assert train.main(["--resume", str(run), "--set", "train.steps=1", "--no-progress"]) == 2
    line = _one_error(capsys)
    assert line == (
        f"error: train.steps: 1 is below step 2, where {run / 'last.pt'} stopped: nothing to "
        "train; to go on, set it higher"
    )
    assert (run / "config.yaml").read_bytes() == before
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2
    # resumed as it is, a finished run says it has nothing left to train, and gives its summary
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert f"note: {run / 'last.pt'} is at step 2 of train.steps 2: nothing left to train" in err
    assert last_json(out)["step"] == 2
