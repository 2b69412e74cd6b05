"""The learning-rate schedule and the wall-clock budget (train.max_minutes)."""

import json
import math
from pathlib import Path

import pytest
from conftest import torchrun_two_ranks

import train
from avssl.config import load_config
from avssl.train.checkpoint import load_checkpoint
from avssl.train.schedule import MIN_TIMED_STEPS, TimeBudget, lr_factor


class FakeClock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_lr_factor_decays_to_zero_at_the_planned_total():
    cfg = load_config(None, ["train.steps=1000", "train.warmup_steps=100"])
    assert lr_factor(49, cfg) == pytest.approx(0.5)  # warm-up: linear
    assert lr_factor(100, cfg, total=300) == pytest.approx(1.0)
    assert lr_factor(200, cfg, total=300) == pytest.approx(0.5)
    assert lr_factor(300, cfg, total=300) == pytest.approx(0.0, abs=1e-12)
    # the default total is train.steps
    assert lr_factor(550, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(550, cfg, total=1000) == lr_factor(550, cfg)


def test_budget_plan_from_the_mean_step_time():
    clock = FakeClock(10.0)  # 10 s of set-up before the first step
    budget = TimeBudget(1.0, 1000, start=0.0, clock=clock)
    budget.begin(0)
    clock.t = 10.0 + (MIN_TIMED_STEPS - 1)
    assert budget.plan(MIN_TIMED_STEPS - 1) == 1000  # too few steps timed to estimate
    clock.t = 15.0  # 1 s per step
    assert budget.plan(5) == 5 + 45
    budget.last_validation = 5.0  # kept back for the final validation
    assert budget.plan(5) == 5 + 40
    clock.t = 200.0  # past the budget: stop now
    assert budget.plan(5) == 5


def test_budget_never_asks_for_more_than_train_steps_and_off_is_exact():
    clock = FakeClock()
    budget = TimeBudget(60.0, 20, start=0.0, clock=clock)
    budget.begin(0)
    clock.t = 10.0
    assert budget.plan(10) == 20
    off = TimeBudget(0.0, 20, start=0.0, clock=clock)
    off.begin(0)
    clock.t = 1e6
    assert not off.enabled and off.plan(10) == 20


def test_budget_counts_the_time_before_a_resume():
    clock = FakeClock(100.0)
    budget = TimeBudget(1.0, 1000, start=100.0, elapsed_before=30.0, clock=clock)
    assert budget.elapsed() == pytest.approx(30.0)
    budget.begin(500)
    clock.t = 110.0  # 2 s per step over 5 steps: 20 s of the 60 left
    assert budget.plan(505) == 505 + 10


def test_resumed_budget_keeps_the_saved_plan_until_it_has_timed_steps():
    clock = FakeClock(100.0)
    cfg = load_config(None, ["train.steps=1000", "train.max_minutes=1"]).train
    saved = {"config": {"train": {"steps": 1000, "max_minutes": 1.0}}, "elapsed": 30.0}
    saved.update(planned_steps=520, last_validation=4.0)
    budget = TimeBudget.for_run(cfg, 100.0, saved)
    budget.clock = clock
    assert budget.planned == 520 and budget.last_validation == 4.0
    budget.begin(500)
    clock.t = 104.0
    assert budget.plan(504) == 520  # too few steps timed: the saved plan, not train.steps
    clock.t = 110.0  # 2 s per step; 60 - 30 - 10 s left, 4 of them kept for the validation
    assert budget.plan(505) == 505 + 8
    # another budget, or train.steps, on resume: planned afresh
    lifted = load_config(None, ["train.steps=1000", "train.max_minutes=2"]).train
    assert TimeBudget.for_run(lifted, 100.0, saved).planned == 1000


@pytest.mark.parametrize("step_s,val_s,every", [(1.0, 3.0, 10), (0.37, 11.0, 25), (2.5, 0.0, 7)])
def test_simulated_run_ends_inside_the_budget(step_s, val_s, every):
    """The loop's use of the plan, on a fake clock: the run (final validation included) ends
    inside the budget, and not much before it."""
    clock, limit = FakeClock(4.0), 120.0
    budget = TimeBudget(limit / 60, 10**6, start=0.0, clock=clock)
    budget.begin(0)
    step, total, validated_at = 0, 10**6, None
    while step < total:
        clock.t += step_s
        step += 1
        total = budget.plan(step)
        if step % every == 0 or step == total:
            clock.t += val_s
            budget.last_validation, validated_at = val_s, step
    assert validated_at == step  # the run ends on a validation
    assert clock.t <= limit
    assert limit - clock.t < 3 * (step_s + val_s)


def test_time_limited_run_stops_validated_and_resumable(tiny_train_args, capsys):
    args = tiny_train_args(
        "train.steps=100000", "train.eval_every=100000", "train.max_minutes=0.05"
    )
    assert train.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["time_limited"] and not summary["interrupted"]
    assert MIN_TIMED_STEPS <= summary["step"] < 100000
    run = Path(summary["run_dir"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "val"] == [summary["step"]]
    assert rows[-2]["split"] == "train" and rows[-2]["planned_steps"] == summary["step"]
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == summary["step"] and last["elapsed"] > 0
    # lifting the budget on resume continues the same run to train.steps
    resume = ["--resume", str(run), "--set", "train.max_minutes=0", "--no-progress"]
    assert train.main([*resume, "--set", f"train.steps={summary['step'] + 2}"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["step"] == summary["step"] + 2 and not resumed["time_limited"]
    # an override that changes the model's shape is refused in one line, the run left as it was
    before = (run / "last.pt").read_bytes()
    assert train.main([*resume, "--set", "model.embed_dim=24"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {run / 'last.pt'}: the --set overrides")
    assert (run / "last.pt").read_bytes() == before


def test_time_limited_ddp_ranks_stop_together(tiny_train_args, tiny_cache, tmp_path):
    """Each rank times itself, but rank 0's plan is broadcast: both stop at one step with the same
    learning rates, so their weights stay identical (and neither waits forever on the other)."""
    args = tiny_train_args(
        "train.batch_size=2", "train.steps=100000", "train.eval_every=100000",
        "train.max_minutes=0.08",
    )  # fmt: skip
    proc, digests = torchrun_two_ranks(args, tiny_cache, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["time_limited"] and summary["step"] < 100000


def test_a_budget_shorter_than_the_warm_up_still_decays_to_zero():
    cfg = load_config(None, ["train.steps=1200", "train.warmup_steps=100"])
    factors = [lr_factor(s, cfg, total=80) for s in range(80)]
    assert factors[0] > 0 and max(factors) == pytest.approx(1.0)
    assert factors[-1] < 0.01  # before: 0.8, still warming up when the plan ended
    assert lr_factor(50, cfg) == pytest.approx(51 / 100)  # a full-length run is unchanged


def _documented_factor(k: int, warmup_steps: int, total: int, schedule: str) -> float:
    """The schedule as ``lr_factor``'s docstring states it: step ``k`` (from 0) of a linear
    warm-up over ``min(warmup_steps, total // 2)`` steps reaches 1 on its last step, then the
    factor is 1 (constant) or a half cosine from 1 at the warm-up's end to 0 at ``total``."""
    w = min(warmup_steps, total // 2)
    if k < w:
        return (k + 1) / w
    if schedule == "constant":
        return 1.0
    return (1 + math.cos(math.pi * min(1.0, (k - w) / max(1, total - w)))) / 2


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_lr_factor_against_the_documented_schedule_at_every_step(schedule):
    for warmup, total in [(0, 7), (3, 10), (10, 10), (4, 9), (1, 2), (5, 1)]:
        cfg = load_config(None, [f"train.steps={total}", f"train.warmup_steps={warmup}",
                                 f"train.schedule={schedule}"])  # fmt: skip
        for k in range(total + 2):
            want = _documented_factor(k, warmup, total, schedule)
            assert lr_factor(k, cfg) == pytest.approx(want, abs=1e-12), (warmup, total, k)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_each_step_trains_at_its_scheduled_rate(schedule, tiny_train_args, capsys):
    """The learning rate logged for each step (``log_every=1``: the rate its update used) is
    ``train.lr`` times the documented factor of that step's index: the loop neither runs the
    schedule a step ahead nor a step behind."""
    sets = ("train.steps=8", "train.warmup_steps=3", "train.log_every=1", "train.eval_every=8",
            "train.lr=0.004", f"train.schedule={schedule}")  # fmt: skip
    assert train.main(tiny_train_args(*sets)) == 0
    run = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["lr"] for r in rows if r["split"] == "train"}
    assert sorted(logged) == list(range(1, 9))
    for step, lr in logged.items():  # the row of step s is written after update s - 1
        assert lr == pytest.approx(0.004 * _documented_factor(step - 1, 3, 8, schedule)), step


def test_best_pt_is_the_first_validation_at_the_best_accuracy(tiny_train_args, capsys, monkeypatch):
    """Scripted validation accuracies with a tie at the top: ``best.pt``, its record and the
    summary name the earliest validation that reached the maximum (a later equal score is no
    improvement), as a first-arg-max over the logged validations gives it."""
    from avssl.train import loop

    scripted, real = iter([0.5, 0.75, 0.75, 0.25]), loop.avc_metrics
    monkeypatch.setattr(loop, "avc_metrics", lambda *a: {**real(*a), "accuracy": next(scripted)})
    assert train.main(tiny_train_args("train.steps=8", "train.eval_every=2")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = Path(summary["run_dir"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    val = [(r["step"], r["accuracy"]) for r in rows if r["split"] == "val"]
    assert val == [(2, 0.5), (4, 0.75), (6, 0.75), (8, 0.25)]
    first_best = next(step for step, acc in val if acc == max(a for _, a in val))
    best = load_checkpoint(run / "best.pt")
    assert best["step"] == best["best"]["step"] == summary["best_step"] == first_best == 4
    assert summary["val"]["accuracy"] == 0.75 and load_checkpoint(run / "last.pt")["step"] == 8


def test_a_time_limited_run_decays_over_the_steps_its_plan_leaves(tiny_train_args, capsys):
    """Under ``train.max_minutes`` each step's rate follows the plan in force when it ran (the
    ``planned_steps`` of the step before): the cosine is compressed into the planned steps
    instead of decaying over ``train.steps`` (100,000 here: a rate that hardly moves)."""
    sets = ("train.steps=100000", "train.eval_every=100000", "train.max_minutes=0.05",
            "train.log_every=1", "train.lr=0.004")  # fmt: skip
    assert train.main(tiny_train_args(*sets)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["time_limited"]
    rows = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text()
            .splitlines()]  # fmt: skip
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, summary["step"] + 1))
    plan = [100000] + [r["planned_steps"] for r in train_rows]  # before step 1: train.steps
    for r in train_rows:
        want = 0.004 * _documented_factor(r["step"] - 1, 0, plan[r["step"] - 1], "cosine")
        assert r["lr"] == pytest.approx(want, rel=1e-9, abs=1e-15), r["step"]
