"""Interrupted and failing training runs, and untrusted checkpoints and configs (issue 8).

A ``kill -9`` at any moment leaves a loadable ``last.pt`` and ``--resume`` reproduces the
uninterrupted run's weights bit for bit (deterministic settings, one thread); SIGINT/SIGTERM
checkpoint and say how to resume; a non-finite loss stops with the step and keeps the last good
checkpoint; an unwritable run folder or a full disk fails at start-up.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import pytest
import torch
from bad_media import last_json
from conftest import TINY, poison_loss

import evaluate
import train
from avssl.cli import main as cli
from avssl.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# Long enough to be interrupted mid-run; a checkpoint every 2 steps.
LONG = ["train.steps=40", "train.eval_every=2", "train.log_every=10", "train.val_windows=1"]


def _argv(*sets: str) -> list[str]:
    return [a for s in sets for a in ("--set", s)] + ["--no-progress"]


@contextmanager
def _one_thread():
    """The subprocesses run with one thread: so does the in-process reference (same floats)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _start(run_dir: Path, tiny_cache: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AVSSL_CACHE": str(tiny_cache)}
    cmd = [sys.executable, str(ROOT / "train.py"), "--run-dir", str(run_dir),
           *_argv(*TINY, *LONG)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def straight(tiny_cache, tmp_path_factory) -> dict:
    """The uninterrupted run every interrupted one must reproduce: its summary and weights."""
    run = tmp_path_factory.mktemp("straight") / "run"
    out = io.StringIO()
    with _one_thread(), redirect_stdout(out):
        code = train.main([*_argv(*TINY, *LONG), "--run-dir", str(run)])
    assert code == 0
    digest = last_json(out.getvalue())["weights_digest"]
    return {"dir": run, "model": load_checkpoint(run / "last.pt")["model"], "digest": digest}


def _resume(run_dir: Path, capsys) -> dict:
    with _one_thread():
        code = train.main(["--resume", str(run_dir), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return last_json(out)


def _same_weights(run: Path, straight: dict) -> None:
    got = load_checkpoint(run / "last.pt")["model"]
    assert got.keys() == straight["model"].keys()
    assert all(torch.equal(v, got[k]) for k, v in straight["model"].items())


def test_kill9_then_resume_reproduces_the_straight_run(straight, tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    proc = _start(run, tiny_cache)
    t0 = time.time()
    while not (run / "last.pt").exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < 120, "no checkpoint written"
        time.sleep(0.01)
    time.sleep(0.2)  # later in the run, perhaps while a checkpoint is being written
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(run / "last.pt")  # never corrupt
    assert 0 < state["step"] < 40, "the run was not interrupted mid-way"
    summary = _resume(run, capsys)
    assert summary["step"] == 40 and not summary["interrupted"]
    _same_weights(run, straight)
    assert summary["weights_digest"] == straight["digest"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_and_says_how_to_resume(sig, straight, tmp_path, capsys, monkeypatch):
    """The signal arrives (in this process) right after the first checkpoint is written."""
    import avssl.train.loop as loop

    real = loop.save_checkpoint

    def save_then_signal(path, state):
        out = real(path, state)
        if Path(path).name == "last.pt" and state["step"] == 2:
            os.kill(os.getpid(), sig)
        return out

    monkeypatch.setattr(loop, "save_checkpoint", save_then_signal)
    run = tmp_path / "run"
    with _one_thread():
        code = train.main([*_argv(*TINY, *LONG), "--run-dir", str(run)])
    out, err = capsys.readouterr()
    assert code == 128 + sig and "Traceback" not in err, err
    summary = last_json(out)
    assert summary["interrupted"] and summary["signal"] == sig and summary["step"] == 2
    assert load_checkpoint(run / "last.pt")["step"] == 2
    line = [x for x in err.splitlines() if "stopped at step" in x]
    assert line == [
        f"{sig.name}: stopped at step 2; checkpoint saved to "
        f"{run / 'last.pt'}. Resume with: python train.py --resume {run}"
    ]
    monkeypatch.setattr(loop, "save_checkpoint", real)
    resumed = _resume(run, capsys)
    assert resumed["step"] == 40
    _same_weights(run, straight)
    assert resumed["weights_digest"] == straight["digest"]


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_train_args, tmp_path, capsys, monkeypatch
):
    poison_loss(monkeypatch, 5)
    run = tmp_path / "run"
    code = train.main([*tiny_train_args("train.eval_every=2"), "--run-dir", str(run)])
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.startswith("error")]  # (other lines: progress)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: loss is nan at step 4; stopped.")
    assert f"last good checkpoint is {run / 'last.pt'}" in lines[0]
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_unwritable_run_dir_fails_at_start_up(tiny_train_args, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = train.main([*tiny_train_args(), "--run-dir", str(blocker / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"error: {blocker / 'run'}: run directory is not writable (Not a directory)"
    ]
    code = train.main(tiny_train_args(f"train.runs_dir={blocker}"))
    err = capsys.readouterr().err
    assert code == 2 and "run directory is not writable" in err and len(err.splitlines()) == 1
    # a full disk (as reported by the OS) is refused before any decoding or training
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 2**20))
    code = train.main([*tiny_train_args(), "--run-dir", str(tmp_path / "full")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"error: {tmp_path / 'full'}: only 1 MB free on this disk"
    assert not (tmp_path / "full" / "config.yaml").exists()
    assert not (tmp_path / "full").exists()  # the folder made for the run is removed with it


def test_refused_config_leaves_no_empty_run_dir(tiny_train_args, tmp_path, capsys):
    bad = "model.audio_rfn_blocks=9"  # refused before any folder is made or clip decoded
    code = train.main(tiny_train_args(bad, "name=refused"))
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [
        "error: model.audio_rfn_blocks: 9 is not in [0, 2] (the audio tower's blocks)"
    ]
    assert not (tmp_path / "runs" / "refused").exists()
    code = train.main(tiny_train_args(f"data.root={tmp_path / 'nowhere'}", "name=no-data"))
    assert code == 2 and "no manifest found" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "no-data").exists()  # made for the run, removed with it
    mine = tmp_path / "mine"  # an empty folder the user made is theirs: kept
    mine.mkdir()
    assert train.main([*tiny_train_args(bad), "--run-dir", str(mine)]) == 2
    assert mine.is_dir()


# ---- untrusted input ----------------------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> Path:
    """A run directory whose last.pt would run code when unpickled without weights_only."""
    run = tmp_path_factory.mktemp("evil-run")
    with open(run / "last.pt", "wb") as fh:
        pickle.dump({"format": "avssl-checkpoint-v1", "payload": _Evil()}, fh)
    torch.save({"format": "avssl-checkpoint-v1", "payload": _Evil()}, run / "evil.pt")
    return run


def _entry_points(ckpt: Path, tmp: Path) -> dict[str, tuple]:
    return {
        **{
            f"evaluate {sub}": (evaluate.main, [sub, "--checkpoint", str(ckpt), "--no-progress"])
            for sub in ("avc", "retrieval", "localize", "sync")
        },
        "evaluate classify": (evaluate.main, ["classify", "--dataset", "folder", "--root",
                                              str(tmp), "--checkpoint", str(ckpt)]),
        "train --resume": (train.main, ["--resume", str(ckpt)]),
        "index": (cli, ["index", "--checkpoint", str(ckpt), "--inputs", str(tmp),
                        "--out", str(tmp / "idx")]),
        "query": (cli, ["query", "--index", str(tmp / "idx"), "--checkpoint", str(ckpt),
                        "--audio", str(tmp / "a.wav")]),
        "overlay": (cli, ["overlay", str(tmp / "v.mp4"), "--checkpoint", str(ckpt),
                          "-o", str(tmp / "o.mp4")]),
    }  # fmt: skip


@pytest.mark.parametrize("name", ["evil.pt", "last.pt"])
def test_code_running_checkpoints_refused_everywhere(name, evil, media_factory, tmp_path, capsys):
    media_factory("v.mp4")
    for label in ("j", "k"):  # a folder dataset of two classes, one file each, for classify
        (tmp_path / label).mkdir()
        media_factory(f"{label}/a.wav")
    media_factory("a.wav")
    for label, (fn, argv) in _entry_points(evil / name, tmp_path).items():
        if label == "query":  # query opens its index first: give it a real one
            continue
        code = fn(argv)
        out, err = capsys.readouterr()
        assert "code ran" not in out + err, label
        assert code == 2 and len(err.strip().splitlines()) == 1, (label, err)
        assert err.startswith(f"error: {evil / name}: ") and "Traceback" not in err, label
        assert "refused" in err or "not a PyTorch checkpoint file" in err, (label, err)


def test_query_refuses_code_running_checkpoint(evil, tiny_train_args, media_factory, tmp_path,
                                               capsys):  # fmt: skip
    assert train.main([*tiny_train_args("train.steps=1", "train.eval_every=1"),
                       "--run-dir", str(tmp_path / "run")]) == 0  # fmt: skip
    wav = media_factory("a.wav")
    assert cli(["index", "--checkpoint", str(tmp_path / "run"), "--inputs", str(wav),
                "--out", str(tmp_path / "idx"), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    code = cli(["query", "--index", str(tmp_path / "idx"), "--checkpoint", str(evil / "evil.pt"),
                "--audio", str(wav)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2 and "code ran" not in out + err and "refused" in err
    assert err.startswith(f"error: {evil / 'evil.pt'}: ") and len(err.strip().splitlines()) == 1


def test_configs_are_safe_and_name_the_nearest_key(tmp_path, capsys):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    assert train.main(["--config", str(evil)]) == 2
    out, err = capsys.readouterr()
    assert "pwned" not in out and err.startswith(f"error: {evil}") and "not valid YAML" in err
    assert train.main(["--set", "train.stpes=3"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'train.steps'" in err and len(err.strip().splitlines()) == 1
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  widnow: 2.0\n")
    assert train.main(["--config", str(typo)]) == 2
    err = capsys.readouterr().err
    assert "widnow" in err and "window" in err and len(err.strip().splitlines()) == 1
