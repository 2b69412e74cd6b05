"""``train.py --resume`` continues a run as if it had never stopped: the random draws of audio
augmentation, the time budget's plan, the config's weight decay, and the metrics log."""

import itertools
import json
import os
import signal
from pathlib import Path

import pytest
from bad_media import last_json

import train
from avssl.config import load_config
from avssl.train.checkpoint import load_checkpoint, save_checkpoint
from avssl.train.schedule import MIN_TIMED_STEPS, TimeBudget


class Crash(Exception):
    """Stands for a crash (an OOM kill, a power cut) in the middle of a run."""


def _resume(run: Path, *sets: str) -> int:
    return train.main(
        ["--resume", str(run), *[a for s in sets for a in ("--set", s)], "--no-progress"]
    )


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _stop_after(monkeypatch, step: int, crash: bool = False) -> None:
    """End the run after ``step`` steps: SIGINT (the step under way finishes), or a crash."""
    import avssl.train.loop as loop

    real = loop.lr_factor

    def lr_factor(at, cfg, total=None):  # ``at``: the index of the step about to be trained
        if crash and at == step:
            raise Crash()
        if not crash and at == step - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(at, cfg, total)

    monkeypatch.setattr(loop, "lr_factor", lr_factor)


def _fake_budget_clock(monkeypatch, tick: float) -> None:
    """Time the ``train.max_minutes`` budget on a clock that moves ``tick`` seconds at each
    reading (a run's readings are fixed by its steps), so its plan does not depend on how fast
    this machine trains."""
    import avssl.train.loop as loop

    readings = itertools.count()

    def clock() -> float:
        return tick * next(readings)

    class FakeClockBudget(TimeBudget):
        @classmethod
        def for_run(cls, cfg, start, resume=None):
            budget = super().for_run(cfg, clock(), resume)
            budget.clock = clock
            return budget

    monkeypatch.setattr(loop, "TimeBudget", FakeClockBudget)


@pytest.mark.parametrize("stop", [4, 6])  # 3 batches an epoch: mid-epoch, at an epoch's end
def test_resume_with_audio_augmentation_is_exact(stop, tiny_train_args, capsys):
    """Building the resumed run's loader draws from the global generator; the uninterrupted run
    did so at the start of the epoch only, so later augmentation draws must not shift."""
    aug = ("model.audio.speed_perturb=0.3", "train.schedule=constant", f"train.eval_every={stop}")
    assert train.main(tiny_train_args("train.steps=8", *aug)) == 0
    straight = last_json(capsys.readouterr().out)
    assert train.main(tiny_train_args(f"train.steps={stop}", *aug)) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    assert _resume(run, "train.steps=8") == 0
    resumed = last_json(capsys.readouterr().out)
    assert resumed["step"] == 8
    assert resumed["weights_digest"] == straight["weights_digest"]


def test_time_limited_resume_keeps_its_plan_and_a_finished_run_stays_finished(
    tiny_train_args, capsys, monkeypatch
):
    # 60 s on a clock 3 s later at each reading: 31 steps planned when stopped at step 10
    budget = ("train.steps=100000", "train.eval_every=100000", "train.max_minutes=1")
    _fake_budget_clock(monkeypatch, tick=3.0)
    _stop_after(monkeypatch, 10)
    assert train.main(tiny_train_args(*budget, "train.log_every=1")) == 128 + signal.SIGINT
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    saved = load_checkpoint(run / "last.pt")
    assert saved["step"] == 10 and MIN_TIMED_STEPS < saved["planned_steps"] < 100000
    monkeypatch.undo()
    _fake_budget_clock(monkeypatch, tick=3.0)  # a fresh clock, as a new process has
    assert _resume(run) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["time_limited"] and summary["step"] < 100000
    train_rows = [r for r in _rows(run) if r["split"] == "train"]
    before, after = train_rows[9], train_rows[10:]
    assert before["step"] == 10 and after[0]["step"] == 11
    # the saved plan, not train.steps, until the resumed session has timed its own steps
    assert len(after) >= MIN_TIMED_STEPS
    assert [r["planned_steps"] for r in after[: MIN_TIMED_STEPS - 1]] == [
        saved["planned_steps"]
    ] * (MIN_TIMED_STEPS - 1)
    assert after[0]["lr"] < before["lr"]  # the cosine decay goes on, it does not jump back
    # a run that reached its planned end does nothing more when resumed
    last = (run / "last.pt").read_bytes()
    n_rows = len(_rows(run))
    assert _resume(run) == 0
    out, err = capsys.readouterr()
    again = last_json(out)
    assert again["step"] == summary["step"] and again["time_limited"]
    assert again["clips_per_s"] is None  # no step trained in this session
    assert err.splitlines()[0] == (  # and says so
        f"note: {run / 'last.pt'} ended on its time budget (train.max_minutes 1) at step "
        f"{again['step']}: nothing left to train (--set train.max_minutes=M with a larger M, or 0 "
        "for none, to train on)"
    )
    assert (run / "last.pt").read_bytes() == last and len(_rows(run)) == n_rows


@pytest.mark.parametrize("decay_all,want", [("true", [0.5]), ("false", [0.5, 0.0])])
def test_resume_applies_and_records_a_new_weight_decay(decay_all, want, tiny_train_args, capsys):
    sets = ("train.steps=2", "train.eval_every=2", "train.weight_decay=0.1")
    assert train.main(tiny_train_args(*sets, f"train.decay_all={decay_all}")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    assert _resume(run, "train.steps=4", "train.weight_decay=0.5") == 0
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 4
    assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == want
    recorded = load_config(str(run / "config.yaml"), [])
    assert recorded.train.weight_decay == 0.5 and recorded.train.steps == 4


@pytest.mark.parametrize(
    "change,was",
    [("train.decay_all=false", "true"), ("model.learn_temperature=false", "true"),
     ("train.optimizer=adam", "adamw")],  # Adam's state would load, but decay another way
)  # fmt: skip
def test_resume_refuses_other_optimiser_parameters_in_one_line(
    change, was, tiny_train_args, capsys
):
    # the saved optimiser state is for the run's parameter groups: it would not load (a
    # learnt temperature turned into a constant raised a traceback)
    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    last = (run / "last.pt").read_bytes()
    assert _resume(run, "train.steps=4", change) == 2
    key = change.split("=")[0]
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {key}: cannot be changed on resume (the run's optimiser state was saved with "
        f"{key.split('.')[-1]}={was}); start a new run"
    ]
    assert (run / "last.pt").read_bytes() == last


def test_resume_after_a_crash_logs_each_step_once(tiny_train_args, tmp_path, monkeypatch):
    run = tmp_path / "crashed"
    _stop_after(monkeypatch, 5, crash=True)  # after step 5; the last checkpoint is at step 3
    with pytest.raises(Crash):
        train.main(
            [*tiny_train_args("train.eval_every=3", "train.log_every=1"), "--run-dir", str(run)]
        )
    assert load_checkpoint(run / "last.pt")["step"] == 3
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 6, "epoch": 1, "spl')  # a line the crash cut short
    monkeypatch.undo()
    assert _resume(run) == 0
    steps = [(r["step"], r["split"]) for r in _rows(run)]
    train_steps = [(i, "train") for i in range(1, 7)]
    assert steps == [*train_steps[:3], (3, "val"), *train_steps[3:], (6, "val")]


def test_a_signal_during_the_last_step_leaves_a_finished_run(tiny_train_args, capsys, monkeypatch):
    # TINY trains 6 steps: a SIGINT while the 6th runs stops nothing left to do
    _stop_after(monkeypatch, 6)
    assert train.main(tiny_train_args()) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["step"] == 6 and not summary["interrupted"] and summary["signal"] == 0
    assert summary["stop_signal"] == signal.SIGINT  # it came: a script running trainings stops


@pytest.mark.parametrize(
    "change", ["model.conv1_stride=1", "model.audio.n_mels=32", "data.sample_rate=8000"]
)
def test_resume_refuses_a_change_of_what_the_weights_read(change, tiny_train_args, capsys):
    # each keeps every weight's shape (the load succeeds), yet the weights were learnt on other
    # inputs; training-only augmentation may still change
    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    last = (run / "last.pt").read_bytes()
    assert _resume(run, "train.steps=4", change) == 2
    err = capsys.readouterr().err.strip().splitlines()
    key = change.split("=")[0]
    assert len(err) == 1 and err[0].startswith(f"error: {key}: cannot be changed on resume")
    assert (run / "last.pt").read_bytes() == last
    assert _resume(run, "train.steps=4", "model.audio.freq_mask=4") == 0


def test_resume_refuses_a_starting_value_it_would_ignore(tiny_train_args, capsys):
    # the learnt temperature is loaded from the checkpoint: a new starting value would do
    # nothing, while config.yaml recorded it
    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    config = (run / "config.yaml").read_text()
    assert _resume(run, "train.steps=4", "model.temperature=0.5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model.temperature: cannot be changed on")
    assert "0.5 would be ignored" in err[0] and (run / "config.yaml").read_text() == config


def test_resume_with_another_batch_order_starts_the_next_epoch(tiny_train_args, capsys):
    """Skipping the batches done assumes the same order: with another batch size the rest of the
    epoch would show some clips twice and others never, so the run starts the next epoch."""
    assert train.main(tiny_train_args("train.steps=4")) == 0  # epoch 1, batch 1 of 3
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    assert _resume(run, "train.steps=6", "train.batch_size=2") == 0
    assert "epoch 1 changed with the settings (batch_size 4 -> 2)" in capsys.readouterr().err
    state = load_checkpoint(run / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (2, 2)  # not (1, 3)


def test_resume_refuses_to_overwrite_an_edited_config_yaml(tiny_train_args, capsys):
    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    path, last = run / "config.yaml", (run / "last.pt").read_bytes()
    written = path.read_text()
    # an edit --resume would ignore (it trains with last.pt's config) and then overwrite
    edited = written.replace("  steps: 2\n", "  steps: 4\n")
    assert edited != written
    path.write_text("# my note\n" + edited)
    assert _resume(run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: differs from the config last.pt")
    assert "train.steps: 2 in last.pt, 4 here" in err[0] and "--set" in err[0]
    assert path.read_text() == "# my note\n" + edited and (run / "last.pt").read_bytes() == last
    # a broken edit is named too, and kept
    path.write_text("train: [")
    assert _resume(run, "train.steps=4") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not readable as the run's config (not valid YAML" in err[0]
    assert path.read_text() == "train: ["
    # the same change given with --set is not lost: the run goes on, config.yaml records it
    path.write_text("# my note\n" + edited)
    assert _resume(run, "train.steps=4") == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert load_config(str(path), []).train.steps == 4
    # resumed with nothing changed, the file is left as it is, a comment added to it included
    path.write_text("# kept\n" + path.read_text())
    assert _resume(run) == 0
    assert path.read_text().startswith("# kept\n")


def test_a_resume_that_stops_before_its_checkpoint_leaves_config_yaml_as_last_pt(
    tiny_train_args, capsys, monkeypatch
):
    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    written = (run / "config.yaml").read_text()
    # a finished run resumed with a --set: nothing trained, no checkpoint, config.yaml as it was
    assert _resume(run, "train.log_every=2") == 0
    assert (run / "config.yaml").read_text() == written
    # a resume with --set that crashes before its first checkpoint: the same
    _stop_after(monkeypatch, 2, crash=True)
    with pytest.raises(Crash):
        _resume(run, "train.steps=6", "train.lr=0.001")
    monkeypatch.undo()
    assert (run / "config.yaml").read_text() == written
    capsys.readouterr()
    assert _resume(run) == 0  # not refused as an edit
    # once a checkpoint holds the new settings, config.yaml records them
    assert _resume(run, "train.steps=4") == 0
    assert load_config(str(run / "config.yaml"), []).train.steps == 4


def test_resume_of_a_copied_checkpoint_leaves_another_runs_files_alone(
    tiny_train_args, tmp_path, capsys
):
    """A checkpoint copied into a folder that holds another run's ``best.pt`` or
    ``metrics.jsonl`` is refused: resuming there would overwrite them."""
    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    for held in (("best.pt",), ("metrics.jsonl",), ("best.pt", "metrics.jsonl")):
        exp = tmp_path / f"exp_{len(held)}_{held[0]}"
        exp.mkdir()
        (exp / "mine.pt").write_bytes((run / "last.pt").read_bytes())
        theirs = {name: (run / name).read_bytes() for name in held}
        for name, data in theirs.items():
            (exp / name).write_bytes(data)
        assert _resume(exp / "mine.pt", "train.steps=4") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {exp / 'mine.pt'}: resuming")
        assert all(name in err[0] for name in held) and "alone into a new folder" in err[0]
        assert {name: (exp / name).read_bytes() for name in held} == theirs
        assert sorted(p.name for p in exp.iterdir()) == sorted(["mine.pt", *held])
    # a checkpoint copied alone into a new folder resumes, and so does a run's own best.pt
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "mine.pt").write_bytes((run / "last.pt").read_bytes())
    assert _resume(alone / "mine.pt", "train.steps=4") == 0
    assert (alone / "last.pt").is_file() and (alone / "metrics.jsonl").is_file()
    (run / "last.pt").unlink()
    assert _resume(run / "best.pt", "train.steps=4") == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4


def test_resume_names_weights_that_do_not_fit_before_loading_data(
    tiny_train_args, capsys, monkeypatch
):
    """A checkpoint whose weights do not fit its own model (another version's) is refused in
    one line naming the keys, with or without --set, before any data is read; the --set
    overrides are blamed only when they change the model."""
    import avssl.train.loop as loop

    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    good = (run / "last.pt").read_bytes()

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded")

    monkeypatch.setattr(loop, "manifest_path", no_data)
    state = load_checkpoint(run / "last.pt")
    del state["model"]["decision_threshold"]
    state.pop("path")
    save_checkpoint(run / "last.pt", state)
    for sets in ((), ("train.steps=4",)):
        assert _resume(run, *sets) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "weights do not fit the model of its own config" in err[0]
        assert '"decision_threshold"' in err[0] and "--set" not in err[0]
    (run / "last.pt").write_bytes(good)
    assert _resume(run, "train.steps=4", "model.embed_dim=32") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the --set overrides change the model" in err[0]
    assert "size mismatch for" in err[0]


def test_fp16_switched_on_at_resume_starts_a_fresh_gradient_scaler():
    """A run trained in bf16 or fp32 saved its disabled scaler's state as ``{}``; loading that
    into an enabled one failed (``The source state dict is empty``)."""
    import torch

    from avssl.train.resume import restore_training

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    resume = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    resume["scaler"] = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    assert resume["scaler"] == {}
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    restore_training(model, None, opt, scaler, resume)
    assert scaler.is_enabled() and scaler.get_scale() == 2.0**16
    saved = torch.amp.GradScaler("cpu", enabled=True, init_scale=8.0)
    restore_training(model, None, opt, scaler, {**resume, "scaler": saved.state_dict()})
    assert scaler.get_scale() == 8.0  # a saved fp16 state is still restored


def test_resume_on_other_validation_rows_is_refused_and_a_moved_dataset_is_not(
    tiny_train_args, tmp_path, capsys
):
    # any data.root passed as a "move": the validation rows went from 8 to 128 and best.pt was
    # chosen across both sets
    from avssl.data.source import manifest_path

    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    manifest = manifest_path(load_config(run / "config.yaml").data, False, announce=False)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    for r in rows:  # the same rows, their media named where they are: a moved dataset
        r["video"] = str(manifest.parent / r["video"])

    def write(name, kept):
        path = tmp_path / name / "manifest.jsonl"
        path.parent.mkdir()
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        return path.parent

    last = (run / "last.pt").read_bytes()
    first_val = next(i for i, r in enumerate(rows) if r["split"] == "val")
    other = write("other", rows[:first_val] + rows[first_val + 1 :])
    assert _resume(run, "train.steps=4", f"data.root={other}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.root: the validation rows of ")
    assert (run / "last.pt").read_bytes() == last
    assert _resume(run, "train.steps=4", f"data.root={write('moved', rows)}") == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4
