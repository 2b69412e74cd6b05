"""Finite but huge numbers (``1e308``, ``99999999999999999999``) and symlinks as outputs.

Such numbers pass the nan/inf checks and then overflowed (``int(1e308 * 60)``, a C integer in
torch or numpy) with a traceback, some in the middle of a run. Each is one ``error:`` line with
exit status 2; a symlink named as an output (dangling or looping) is the user's file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from test_bad_config import _one_error, refused_before_any_folder

import evaluate
from avssl.cli import main as cli
from avssl.cli import run_guarded
from avssl.cli_outputs import check_new_file
from avssl.config import load_config, to_dict
from avssl.errors import AvsslError
from avssl.eval.sync import MAX_OFFSETS, offset_grid
from avssl.models import build_model
from avssl.train.checkpoint import save_checkpoint
from avssl.train.schedule import MIN_TIMED_STEPS, TimeBudget

HUGE = "99999999999999999999"


# ------------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.synthetic.seed=-1", "data.synthetic.seed: must be >= 0, got -1"),
        ("data.synthetic.seed=4294967296", "data.synthetic.seed: must be at most 4294967295"),
        (f"train.seed={HUGE}", f"train.seed: must be at most 4294967295, got {HUGE}"),
        (f"model.embed_dim={HUGE}", f"model.embed_dim: must be at most 100000, got {HUGE}"),
        (f"model.channels=[8,{HUGE}]", "model.channels: every value must be at most 100000"),
        (f"model.channels=[8,1{'0' * 400}]", "model.channels: every value must be at most"),
        (f"model.audio={{n_mels: {HUGE}}}", "model.audio.n_mels: must be at most 100000"),
        ("train.max_minutes=1e308", "train.max_minutes: must be at most 1000000, got 1e+308"),
        (f"train.val_windows={HUGE}", "train.val_windows: must be at most 100000"),  # mid-run
        ("data.window=1e308", "data.window: must be at most 3600, got 1e+308"),
        (f"data.sample_rate={HUGE}", "data.sample_rate: must be at most 384000"),
        # frames or a rate the readers refuse: every clip skipped, after the decoding
        ("data.frame_size=4097", "data.frame_size: must be at most 4096, got 4097"),
        ("data.sample_rate=384001", "data.sample_rate: must be at most 384000, got 384001"),
    ],
)
def test_huge_config_value_is_one_line_before_any_folder(
    override, message, tiny_train_args, tmp_path, capsys
):
    refused_before_any_folder(override, message, tiny_train_args, tmp_path, capsys)


def test_the_frame_and_rate_limits_are_the_readers():
    from avssl.config_checks import FRAME_LIMIT, RATE_LIMIT
    from avssl.data.media_checks import MAX_PIXELS, MAX_SAMPLE_RATE

    assert (FRAME_LIMIT**2, RATE_LIMIT) == (MAX_PIXELS, MAX_SAMPLE_RATE)


def test_the_largest_accepted_values_load():
    largest = ["train.seed=4294967295", "train.max_minutes=1000000", "model.embed_dim=100000"]
    cfg = load_config(None, [*TINY, *largest])
    assert (cfg.train.seed, cfg.train.max_minutes, cfg.model.embed_dim) == (2**32 - 1, 1e6, 10**5)


# ---------------------------------------------------------------------------- the time budget


def test_budget_plan_with_a_huge_budget_or_an_unmoving_clock():
    now = [0.0]
    budget = TimeBudget(1e308, 1000, start=0.0, clock=lambda: now[0])
    budget.begin(0)
    now[0] = 1.0
    assert budget.plan(MIN_TIMED_STEPS) == 1000  # 1e308 * 60 s is inf: no int(inf)
    still = TimeBudget(1.0, 1000, start=0.0, clock=lambda: 0.0)
    still.begin(0)
    assert still.plan(MIN_TIMED_STEPS) == 1000  # no step time measured: no division by zero


# ------------------------------------------------------------- the backstop in run_guarded


@pytest.mark.parametrize(
    "overflow",
    [
        lambda: int(1e308 * 60),  # OverflowError
        lambda: torch.zeros(10**20),  # torch: "Overflow when unpacking long"
        lambda: [0.0] * 10**20,  # "cannot fit 'int' into an index-sized integer"
    ],
)
def test_an_overflow_is_one_line(overflow, capsys):
    def command(argv):
        overflow()

    assert run_guarded(command, []) == 2
    assert _one_error(capsys).startswith("error: a number is too large for this machine (")


@pytest.mark.parametrize(
    "allocation",
    [
        lambda: np.empty(2**50, np.uint8),  # numpy MemoryError (a petabyte: beyond any RAM)
        lambda: torch.empty(10**15, dtype=torch.uint8),  # torch: "can't allocate memory"
    ],
)
def test_an_allocation_too_large_is_one_line(allocation, capsys):
    def command(argv):
        allocation()

    assert run_guarded(command, []) == 2
    assert _one_error(capsys).startswith("error: not enough memory (")


def test_avc_windows_has_an_upper_bound(capsys):
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["avc", "--checkpoint", "nowhere", "--windows", HUGE])
    assert stop.value.code == 2
    assert f"--windows: must be at most 100,000, got {HUGE}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["index", "--checkpoint", "nowhere", "--out", "ix", "--hop", "1e308"],
         "error: --hop: must be at most 3600 s, got 1e+308"),
        (["cache", "--out", "c", "--shard-mb", "1e308"],
         "error: --shard-mb: must be at most 1048576 (1 TiB), got 1e+308"),
    ],
)  # fmt: skip
def test_huge_tool_flags_name_the_flag(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # refused before the checkpoint or any output is touched
    assert cli(argv) == 2
    assert _one_error(capsys) == message
    assert not any(tmp_path.iterdir())


def test_other_value_errors_still_propagate():
    def command(argv):
        raise ValueError("a bug, not bad input")

    with pytest.raises(ValueError, match="a bug"):
        run_guarded(command, [])


def test_synth_with_a_huge_duration_is_one_line(tmp_path, capsys):
    argv = ["synth", "--out", str(tmp_path / "w"), "--duration", "1e308", "--quiet"]
    assert cli([*argv, "--n-train", "1", "--n-val", "1", "--n-test", "1"]) == 2
    _one_error(capsys)


# --------------------------------------------------------------------------- sync offset grid


def test_offset_grid_refuses_an_absurd_grid():
    fps = 25.0
    most = (MAX_OFFSETS - 1) // 2
    assert len(offset_grid(most / fps, fps)) == 2 * most + 1 <= MAX_OFFSETS
    for max_offset in ((most + 1) / fps, 1e308, float("nan")):
        with pytest.raises(AvsslError, match="--max-offset"):
            offset_grid(max_offset, fps)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    cfg = load_config(None, [s for s in TINY if s.startswith(("data.", "model."))])
    cfg.model.method = "avolnet"
    model = build_model(cfg.model, cfg.data)
    path = tmp_path_factory.mktemp("huge-ckpt") / "model.pt"
    return save_checkpoint(path, {"model": model.state_dict(), "config": to_dict(cfg)})


def test_sync_with_a_huge_max_offset_is_one_line(ckpt, media_factory, capsys):
    video = media_factory("clip.mp4", duration=2.0, size=(48, 64))
    argv = ["sync", "--checkpoint", str(ckpt), "--video", str(video), "--max-offset", "1e308"]
    assert evaluate.main([*argv, "--no-progress"]) == 2
    line = _one_error(capsys)
    assert line.startswith("error: --max-offset 1e+308: more than 10000 offsets"), line


# ---------------------------------------------------------------------- symlinks as outputs


def _overlay(video, ckpt, *extra) -> int:
    return cli(["overlay", str(video), "--checkpoint", str(ckpt), *extra])


def test_overlay_symlink_loop_is_one_line(ckpt, tmp_path, capsys):
    loop = tmp_path / "loop.png"
    os.symlink(tmp_path / "other.png", loop)
    os.symlink(loop, tmp_path / "other.png")
    out = tmp_path / "out.mp4"
    video = tmp_path / "clip.mp4"  # never read: the outputs are checked first
    assert _overlay(video, ckpt, "-o", str(out), "--png", str(loop)) == 2
    assert _one_error(capsys) == f"error: {loop}: is a symlink loop"  # --force would not help
    assert _overlay(video, ckpt, "-o", str(out), "--png", str(loop), "--force") == 2
    assert _one_error(capsys) == f"error: {loop}: is a symlink loop"
    loop_in = tmp_path / "loop.mp4"
    os.symlink(loop_in, loop_in)
    assert _overlay(loop_in, ckpt, "-o", str(out)) == 2
    assert _one_error(capsys) == f"error: {loop_in}: is a symlink loop"
    assert loop.is_symlink() and not out.exists()


def test_a_dangling_symlink_output_is_kept_without_force(tmp_path, capsys):
    target = tmp_path / "not-yet-there.html"
    link = tmp_path / "mylink.html"
    os.symlink(target, link)
    run = tmp_path / "run"
    run.mkdir()
    assert cli(["report", str(run), "-o", str(link)]) == 2
    assert _one_error(capsys) == f"error: {link}: exists (pass --force to overwrite)"
    assert link.is_symlink() and os.readlink(link) == str(target) and not target.exists()
    with pytest.raises(AvsslError, match="exists"):
        check_new_file(link, force=False)
    check_new_file(link, force=True)  # --force may replace it
