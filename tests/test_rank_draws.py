"""Each DDP rank draws its own augmentations (the model's in-forward draws from torch's global
generator), a checkpoint holds every rank's generator states and a resume gives each rank its
own back; a run in one process draws and trains as before, and checkpoints of earlier versions
(rank 0's states alone) still resume."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_media import last_json
from conftest import torchrun_two_ranks

import train
from avssl.train import rng
from avssl.train.checkpoint import load_checkpoint, save_checkpoint
from avssl.train.signals import StopFlag

AUG = ("model.audio.speed_perturb=0.3", "train.batch_size=2")

PEEK = """
import json, os, signal, sys
sys.path.insert(0, {root!r})
import torch
import avssl.train.loop as loop
import train

rank, plain = os.environ["RANK"], loop.lr_factor


def lr_factor(step, cfg, total=None):  # asked once per step, before its forward pass
    with torch.random.fork_rng(devices=[]):  # what the step's first augmentation will draw
        peek = torch.rand(2).tolist()
    with open(os.path.join({out!r}, f"draws-{{rank}}.jsonl"), "a") as fh:
        fh.write(json.dumps([step, peek]) + "\\n")
    if step == {stop} and rank == "1":  # both ranks stop after this step
        os.kill(os.getpid(), signal.SIGINT)
    return plain(step, cfg, total)


loop.lr_factor = lr_factor
sys.exit(train.main(sys.argv[1:]))
"""


def _launch(name: str, args: list[str], tiny_cache, tmp_path: Path, stop: int = -1):
    """``train.py args`` on two ranks, each logging the draws every step starts from into
    ``tmp_path/name``; rank 1 is sent SIGINT during step ``stop`` (from 0; -1: never).

    Returns:
        ``(completed process, {rank: weights digest}, {rank: {step: draws}})``.
    """
    out = tmp_path / name
    out.mkdir()
    script = out / "peek.py"
    root = str(Path(train.__file__).parent)
    script.write_text(PEEK.format(root=root, out=str(out), stop=stop))
    proc, digests = torchrun_two_ranks(args, tiny_cache, tmp_path, script)
    draws = {}
    for rank in ("0", "1"):
        path = out / f"draws-{rank}.jsonl"
        rows = path.read_text().splitlines() if path.is_file() else []
        draws[rank] = {step: peek for step, peek in map(json.loads, rows)}
    return proc, digests, draws


def test_ddp_ranks_draw_their_own_augmentations_and_resume_exactly(
    tiny_train_args, tiny_cache, tmp_path
):
    # 3 steps an epoch: the stop after step 4 is within the second; validation at the end only
    args = tiny_train_args(*AUG, "train.steps=8", "train.eval_every=100")
    proc, digests, straight = _launch("straight", args, tiny_cache, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], proc.stderr[-2000:]
    assert sorted(straight["0"]) == sorted(straight["1"]) == list(range(8))
    assert all(straight["0"][s] != straight["1"][s] for s in range(8))  # draws of its own
    ranks = load_checkpoint(Path(last_json(proc.stdout)["run_dir"]) / "last.pt")[rng.RANKS_KEY]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["rng_cpu"], ranks[1]["rng_cpu"])

    # stopped by a signal (the stop's checkpoint gathers the ranks' states), then resumed
    stopped = tmp_path / "runs-stopped"
    args = tiny_train_args(
        *AUG, "train.steps=8", "train.eval_every=100", f"train.runs_dir={stopped}"
    )
    proc, _, first = _launch("stopped", args, tiny_cache, tmp_path, stop=3)
    assert proc.stderr.count("SIGINT: stopped at step 4;") == 1, proc.stderr[-3000:]
    run = next(stopped.glob("*/last.pt")).parent
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 4 and len(state[rng.RANKS_KEY]) == 2
    proc, resumed_digests, resumed = _launch(
        "resumed", ["--resume", str(run), "--no-progress"], tiny_cache, tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: resume: the checkpoint holds" not in proc.stderr
    for rank in ("0", "1"):  # every step draws as in the uninterrupted run, on each rank
        assert {**first[rank], **resumed[rank]} == straight[rank]
    assert resumed_digests == digests


def test_one_process_draws_from_the_seed_as_before(tiny_train_args, monkeypatch, capsys):
    """After the model is built, a single process's generator makes only the loader's draw
    before the first step: it is not seeded again, so it trains as before draws were per rank
    (the weights of a run in one process are unchanged)."""
    import avssl.train.loop as loop

    built, first, plain_build, plain_lr = [], [], loop.build_model, loop.lr_factor

    def build_model(*args, **kwargs):
        model = plain_build(*args, **kwargs)
        built.append(torch.get_rng_state())
        return model

    def lr_factor(step, cfg, total=None):
        if step == 0:
            first.append(torch.get_rng_state())
        return plain_lr(step, cfg, total)

    monkeypatch.setattr(loop, "build_model", build_model)
    monkeypatch.setattr(loop, "lr_factor", lr_factor)
    assert train.main(tiny_train_args(*AUG, "train.steps=1")) == 0
    assert last_json(capsys.readouterr().out)["step"] == 1
    expected = torch.Generator()
    expected.set_state(built[0])
    torch.empty((), dtype=torch.int64).random_(generator=expected)  # the loader's base seed
    assert len(first) == 1 and torch.equal(first[0], expected.get_state())


def test_a_checkpoint_of_an_earlier_version_resumes_exactly(tiny_train_args, capsys):
    # rank 0's states alone, no per-rank list: restored as before, so the resume is exact
    aug = (*AUG, "train.schedule=constant", "train.eval_every=4")
    assert train.main(tiny_train_args(*aug, "train.steps=8")) == 0
    straight = last_json(capsys.readouterr().out)
    assert train.main(tiny_train_args(*aug, "train.steps=4")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    state = load_checkpoint(run / "last.pt")
    assert len(state.pop(rng.RANKS_KEY)) == 1
    save_checkpoint(run / "last.pt", {k: v for k, v in state.items() if k != "path"})
    args = ["--resume", str(run), "--set", "train.steps=8", "--no-progress"]
    assert train.main(args) == 0
    out = capsys.readouterr()
    assert last_json(out.out)["weights_digest"] == straight["weights_digest"]
    assert "generator states" not in out.err


@pytest.fixture
def global_generators():
    """Python's and numpy's global generators, which a fresh rank seed sets, put back after."""
    states = random.getstate(), np.random.get_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])


def _state_after(seed: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.get_rng_state()


def test_ranks_are_seeded_apart_and_rank_0_is_left_as_it_is(global_generators):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        torch.rand(5)
        before = torch.get_rng_state()
        rng.seed_rank(3, 0)
        assert torch.equal(torch.get_rng_state(), before)
        rng.seed_rank(3, 1)
        assert torch.equal(torch.get_rng_state(), _state_after(rng.rank_seed(3, 1)))
    seeds = {rng.rank_seed(s, r, step) for s in (0, 1) for r in (1, 2) for step in (0, 5)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert rng.rank_seed(0, 1) not in (0, 1)  # not another run's rank 0


def test_resume_with_another_number_of_processes(global_generators):
    a, b, c = (_state_after(s) for s in (11, 12, 13))
    one = {"rng_cpu": a, rng.RANKS_KEY: [{"rng_cpu": a}], "step": 7}
    three = {"rng_cpu": a, rng.RANKS_KEY: [{"rng_cpu": x} for x in (a, b, c)], "step": 7}
    with torch.random.fork_rng(devices=[]):
        rng.restore_rng(one, rank=0, seed=5)
        assert torch.equal(torch.get_rng_state(), a)
        rng.restore_rng(one, rank=1, seed=5)  # no state of its own: a fresh seed from the step
        assert torch.equal(torch.get_rng_state(), _state_after(rng.rank_seed(5, 1, 7)))
        rng.restore_rng(three, rank=1, seed=5)
        assert torch.equal(torch.get_rng_state(), b)
    assert rng.world_note(one, 1) is None and rng.world_note(three, 3) is None
    more = rng.world_note(one, 2)
    assert more.startswith("note: resume: ") and "of 1 process and this run has 2" in more
    assert "ranks 1 and up draw from new seeds" in more and "will not repeat" in more
    fewer = rng.world_note(three, 2)
    assert "of 3 processes and this run has 2" in fewer and "ranks 2 and up" in fewer


def test_an_earlier_checkpoint_gives_every_rank_rank_0s_states():
    a = _state_after(21)
    earlier = {"rng_cpu": a, "step": 7}
    for rank in (0, 1, 2):
        with torch.random.fork_rng(devices=[]):
            rng.restore_rng(earlier, rank=rank, seed=5)
            assert torch.equal(torch.get_rng_state(), a)
    assert rng.world_note(earlier, 2) is None


def test_outside_a_process_group_the_gathered_states_are_this_process_alone():
    assert not torch.distributed.is_initialized()
    states = rng.gather_states()
    assert torch.equal(states["rng_cpu"], torch.get_rng_state())
    assert len(states[rng.RANKS_KEY]) == 1
    assert torch.equal(states[rng.RANKS_KEY][0]["rng_cpu"], states["rng_cpu"])


def test_damaged_generator_states_are_a_one_line_error(tiny_train_args, tmp_path, capsys):
    # refused when the checkpoint is read, before data is loaded, not by a torch traceback at
    # the first batch; a mistyped rng_ranks is not taken for the absent one of earlier versions
    assert train.main(tiny_train_args("train.steps=1")) == 0
    state = load_checkpoint(Path(last_json(capsys.readouterr().out)["run_dir"]) / "last.pt")
    del state["path"], state["format"]
    cpu = state["rng_cpu"]
    edits = {
        "bad rng_cpu in checkpoint (a str, not a generator state)": {"rng_cpu": "x"},
        "bad rng_cpu in checkpoint (not a CPU generator state: 10 bytes)": {"rng_cpu": cpu[:10]},
        "bad rng_ranks in checkpoint (a str, not a list of every rank's states)": {
            rng.RANKS_KEY: "abc"
        },
        "bad rng_ranks in checkpoint (an empty list, not a list of every rank's states)": {
            rng.RANKS_KEY: []
        },
        "bad rng_ranks in checkpoint (rank 1: an int, not a mapping)": {
            rng.RANKS_KEY: [{"rng_cpu": cpu}, 7]
        },
        "bad rng_ranks in checkpoint (rank 0: no rng_cpu)": {rng.RANKS_KEY: [{}]},
        "bad rng_ranks in checkpoint (rank 0: rng_cpu: not a CPU generator state: 4 bytes)": {
            rng.RANKS_KEY: [{"rng_cpu": cpu[:4]}]
        },
        "bad rng_ranks in checkpoint (rank 0: rng_cuda: a float32 tensor, not a byte tensor)": {
            rng.RANKS_KEY: [{"rng_cpu": cpu, "rng_cuda": torch.zeros(16)}]
        },
        "bad rng_cuda in checkpoint (a str, not a list of byte tensors)": {"rng_cuda": "x"},
    }
    for i, (reason, edit) in enumerate(edits.items()):
        run = tmp_path / f"damaged{i}"
        run.mkdir()
        save_checkpoint(run / "last.pt", {**state, **edit})
        assert train.main(["--resume", str(run), "--set", "train.steps=2", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {run / 'last.pt'}: {reason}", err


# a train.py that sends signals to itself: the head shared by the scripts below
SCRIPT_HEAD = """
import os, signal, sys
sys.path.insert(0, {root!r})
import avssl.train.loop as loop
from avssl.train import rng
import train

rank, plain_lr, plain_gather = os.environ["RANK"], loop.lr_factor, rng.gather_states
"""

SIGINT_TWICE = """
def lr_factor(step, cfg, total=None):
    if step == 3 and rank == "1":  # both ranks stop after this step
        os.kill(os.getpid(), signal.SIGINT)
    return plain_lr(step, cfg, total)


def gather_states():  # the stop's (no validation before it): rank 1 is sent SIGINT again
    if rank == "1":
        os.kill(os.getpid(), signal.SIGINT)
    return plain_gather()


loop.lr_factor, rng.gather_states = lr_factor, gather_states
sys.exit(train.main(sys.argv[1:]))
"""

SIGINT_LAST_STEP = """
def lr_factor(step, cfg, total=None):
    if step == cfg.train.steps - 1 and rank == "1":  # during the last step, to rank 1 alone
        os.kill(os.getpid(), signal.SIGINT)
    return plain_lr(step, cfg, total)


loop.lr_factor = lr_factor
sys.exit(train.main(sys.argv[1:]))
"""


def _two_ranks_running(body: str, steps: int, tiny_train_args, tiny_cache, tmp_path):
    """``torchrun_two_ranks`` of :data:`SCRIPT_HEAD` + ``body`` for ``steps`` steps of batch 2,
    no validation before the last."""
    script = tmp_path / "signals.py"
    script.write_text(SCRIPT_HEAD.format(root=str(Path(train.__file__).parent)) + body)
    args = tiny_train_args("train.batch_size=2", f"train.steps={steps}", "train.eval_every=100")
    return torchrun_two_ranks(args, tiny_cache, tmp_path, script)


def test_ddp_a_second_sigint_to_a_rank_during_the_stop_still_saves_it(
    tiny_train_args, tiny_cache, tmp_path
):
    # every rank takes part in the stop's checkpoint (the gather of the generator states): a
    # second SIGINT there must not end one of them, which would lose the checkpoint
    proc, digests = _two_ranks_running(SIGINT_TWICE, 8, tiny_train_args, tiny_cache, tmp_path)
    assert proc.stderr.count("SIGINT: stopped at step 4;") == 1, proc.stderr[-3000:]
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], proc.stderr[-3000:]
    assert load_checkpoint(next((tmp_path / "runs").glob("*/last.pt")))["step"] == 4


def test_ddp_a_signal_to_one_rank_during_the_last_step_is_in_the_summary(
    tiny_train_args, tiny_cache, tmp_path
):
    # the run is complete (exit 0), and rank 0, which prints the summary, says the signal came
    proc, _ = _two_ranks_running(SIGINT_LAST_STEP, 4, tiny_train_args, tiny_cache, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    assert summary["step"] == 4 and not summary["interrupted"], summary
    assert (summary["signal"], summary["stop_signal"]) == (0, signal.SIGINT), summary


class StopAtOnce(StopFlag):
    """A SIGINT that came before the first agreement point (during the run's set-up)."""

    def agreed(self, device):
        self.signum = self.signum or signal.SIGINT
        return super().agreed(device)


@pytest.mark.parametrize("prefetch", [0, 2])  # the loader's draw, and the thread's stand-in
def test_a_fresh_run_stopped_before_its_first_step_resumes_exactly(
    prefetch, tiny_train_args, monkeypatch, capsys
):
    # the first epoch's loader draws its base seed from the global generator before step 1; a
    # checkpoint's states are those after that draw, also when the stop came before the loader
    import avssl.train.loop as loop

    sets = (*AUG, "train.steps=4", f"data.prefetch={prefetch}")
    assert train.main(tiny_train_args(*sets)) == 0
    straight = last_json(capsys.readouterr().out)
    monkeypatch.setattr(loop, "StopFlag", StopAtOnce)
    assert train.main(tiny_train_args(*sets)) == 128 + signal.SIGINT
    out, err = capsys.readouterr()
    run = Path(last_json(out)["run_dir"])
    assert "SIGINT: stopped at step 0;" in err
    assert load_checkpoint(run / "last.pt")["step"] == 0
    monkeypatch.undo()
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    resumed = last_json(capsys.readouterr().out)
    assert resumed["step"] == 4
    assert resumed["weights_digest"] == straight["weights_digest"]


def test_a_resumed_run_stopped_before_its_first_step_keeps_the_states_it_resumed(
    tiny_train_args, monkeypatch, capsys
):
    # the stop's checkpoint holds the generator states the run resumed with, not those the
    # set-up left (the resume sets them at the first batch, which never came)
    import avssl.train.loop as loop

    assert train.main(tiny_train_args(*AUG, "train.steps=4")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    before = load_checkpoint(run / "last.pt")
    monkeypatch.setattr(loop, "StopFlag", StopAtOnce)
    args = ["--resume", str(run), "--set", "train.steps=8", "--no-progress"]
    assert train.main(args) == 128 + signal.SIGINT
    assert "SIGINT: stopped at step 4;" in capsys.readouterr().err
    after = load_checkpoint(run / "last.pt")
    assert after["step"] == 4 and after["config"]["train"]["steps"] == 8
    assert torch.equal(after["rng_cpu"], before["rng_cpu"])
    assert [
        torch.equal(a["rng_cpu"], b["rng_cpu"])
        for a, b in zip(after[rng.RANKS_KEY], before[rng.RANKS_KEY], strict=True)
    ] == [True]


def test_a_finished_run_resumed_with_another_world_has_no_note_on_draws(tiny_train_args, capsys):
    # nothing is left to train, so no draw is made: the world-size note would only be noise
    assert train.main(tiny_train_args("train.steps=1")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    state = load_checkpoint(run / "last.pt")
    state[rng.RANKS_KEY] *= 2  # as if two processes had written it
    save_checkpoint(run / "last.pt", {k: v for k, v in state.items() if k != "path"})
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "nothing left to train" in err and "generator states" not in err, err
