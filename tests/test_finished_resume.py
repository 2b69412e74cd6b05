"""``train.py --resume`` of a run with nothing left to train gives the run's summary from the
record its checkpoint holds, without loading the data (avssl/train/finished.py); a checkpoint
without that record (an older version's) or settings it was not made under load the data as
before, and print the same summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bad_media import last_json, run
from conftest import TINY

import train
from avssl.config import load_config
from avssl.data.source import manifest_path
from avssl.train import loop
from avssl.train.checkpoint import load_checkpoint, save_checkpoint
from avssl.train.finished import RECORD_KEY

SHORT = ("train.steps=2", "train.eval_every=2")


def _resume(capsys, run_dir: Path, *argv: str) -> tuple[int, str, str]:
    return run(capsys, train.main, ["--resume", str(run_dir), *argv, "--no-progress"])


def _train(capsys, args: list[str]) -> tuple[Path, dict]:
    code, out, err = run(capsys, train.main, args)
    assert code == 0, err
    summary = last_json(out)
    return Path(summary["run_dir"]), summary


def _no_data(monkeypatch) -> None:
    """Fail the test if the resume loads the data (or trains)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the finished run's data were loaded")

    for name in ("train", "load_split", "manifest_path"):
        monkeypatch.setattr(loop, name, refuse)


def _count_trainings(monkeypatch) -> list:
    """The calls of the training loop (which loads the data), recorded as they happen."""
    calls, real = [], loop.train

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train", counted)
    return calls


def _edit_record(run_dir: Path, **changes) -> None:
    """Rewrite ``last.pt`` with its record changed (a value None: the record removed, as in a
    checkpoint of an older version)."""
    state = load_checkpoint(run_dir / "last.pt")
    state.pop("path")  # added by load_checkpoint
    if any(v is None for v in changes.values()):
        del state[RECORD_KEY]
    else:
        state[RECORD_KEY] = {**state[RECORD_KEY], **changes}
    save_checkpoint(run_dir / "last.pt", state)


def _files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def _estimate(summary: dict) -> dict:
    return {k: v for k, v in summary["memory_mb"].items() if k != "peak_mb"}


def test_a_finished_run_gives_its_summary_without_loading_the_data(
    tiny_train_args, capsys, monkeypatch
):
    run_dir, first = _train(capsys, tiny_train_args(*SHORT))
    before = _files(run_dir)
    _no_data(monkeypatch)
    code, out, err = _resume(capsys, run_dir)
    assert code == 0, err
    assert f"note: {run_dir / 'last.pt'} is at step 2 of train.steps 2: nothing left" in err
    again = last_json(out)
    # the training's summary, keys in order, but for this session's own values (it trained
    # nothing) and the peak, read when the training saved the checkpoint rather than at its end
    peak = again["memory_mb"]["peak_mb"]
    expected = {
        **first, "clips_per_s": None, "data_wait_fraction": 0.0, "seconds": again["seconds"],
        "memory_mb": {**first["memory_mb"], "peak_mb": peak},
    }  # fmt: skip
    assert json.dumps(again) == json.dumps(expected)
    assert 0 < peak <= first["memory_mb"]["peak_mb"]
    assert _files(run_dir) == before  # nothing written


def test_a_finished_run_reports_the_peak_its_training_measured(
    tiny_train_args, capsys, monkeypatch
):
    # not the peak of the resume, which loads nothing: below the estimate it would contradict
    run_dir, first = _train(capsys, tiny_train_args(*SHORT))
    recorded = load_checkpoint(run_dir / "last.pt")[RECORD_KEY]["memory_mb"]
    assert list(recorded) == list(first["memory_mb"])
    assert _estimate({"memory_mb": recorded}) == _estimate(first)
    assert 0 < recorded["peak_mb"] <= first["memory_mb"]["peak_mb"]  # read at the last save
    _edit_record(run_dir, memory_mb={**recorded, "peak_mb": 12345.6})  # no process's peak here
    _no_data(monkeypatch)
    code, out, err = _resume(capsys, run_dir)
    assert code == 0, err
    assert last_json(out)["memory_mb"] == {**recorded, "peak_mb": 12345.6}


def test_a_checkpoint_without_the_record_loads_the_data_and_prints_the_same(
    tiny_train_args, capsys, monkeypatch
):
    run_dir, _ = _train(capsys, tiny_train_args(*SHORT))
    trainings = _count_trainings(monkeypatch)
    code, out, err = _resume(capsys, run_dir)
    assert code == 0 and not trainings, err
    fast = last_json(out)
    _edit_record(run_dir, record=None)  # as an older version wrote it
    code, out, err = _resume(capsys, run_dir)
    assert code == 0 and len(trainings) == 1, err
    assert "nothing left to train" in err
    loaded = last_json(out)
    assert list(loaded) == list(fast)
    for key in fast.keys() - {"memory_mb", "seconds"}:
        assert loaded[key] == fast[key], key
    # the estimate's peak adds what this process holds, which its data change
    for key in ("activations_mb", "optimizer_mb"):
        assert loaded["memory_mb"][key] == fast["memory_mb"][key]
    assert RECORD_KEY not in load_checkpoint(run_dir / "last.pt")  # nothing was rewritten


@pytest.mark.parametrize(
    "sets,changes",
    [(["--set", "train.log_every=1"], {}), ([], {"world": 2}), ([], {"precision": "bf16"}),
     ([], {"device": "cuda"}), ([], {"skipped": "none"}),
     ([], {"memory_mb": {"activations_mb": 1.0, "optimizer_mb": 0.1, "estimated_peak_mb": 9.0}})],
    ids=["a --set", "other world", "other precision", "other device", "malformed", "no peak"],
)  # fmt: skip
def test_a_record_made_under_other_settings_is_not_used(
    sets, changes, tiny_train_args, capsys, monkeypatch
):
    run_dir, first = _train(capsys, tiny_train_args(*SHORT))
    if changes:
        _edit_record(run_dir, **changes)
    trainings = _count_trainings(monkeypatch)
    code, out, err = _resume(capsys, run_dir, *sets)
    assert code == 0 and len(trainings) == 1, err
    again = last_json(out)
    assert again["step"] == 2 and again["weights_digest"] == first["weights_digest"]


def test_a_finished_run_lists_its_skipped_items_and_strict_refuses_them(
    tiny_train_args, tmp_path, capsys, monkeypatch
):
    # the tiny world with a training row whose file is gone: skipped, listed in the summary
    world = tmp_path / "world"
    shutil.copytree(manifest_path(load_config(None, list(TINY)).data, False).parent, world)
    row = {"id": "gone", "video": "train/gone.mp4", "split": "train", "labels": ["circle"]}
    with open(world / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    args = tiny_train_args(*SHORT, f"data.root={world}")
    code, out, strict_err = run(capsys, train.main, [*args, "--strict"])
    assert code == 2 and "--strict" in strict_err, strict_err
    run_dir, first = _train(capsys, args)
    assert first["n_skipped"] == 1 and first["skipped"][0]["id"] == "gone"
    before = _files(run_dir)
    _no_data(monkeypatch)
    code, out, err = _resume(capsys, run_dir)
    assert code == 0, err
    again = last_json(out)
    assert (again["n_skipped"], again["skipped"]) == (first["n_skipped"], first["skipped"])
    # --strict: the error a training session gives, in one line, nothing written
    code, out, err = _resume(capsys, run_dir, "--strict")
    assert code == 2 and out == "", err
    assert err.strip().splitlines()[-1] == strict_err.strip().splitlines()[-1]
    assert _files(run_dir) == before
