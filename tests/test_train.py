"""End-to-end training, evaluation, resume and DDP on a seconds-long tiny config."""

import json
import re
import time
from pathlib import Path

import pytest
import torch
from bad_media import last_json
from conftest import TINY, torchrun_two_ranks

import evaluate
import train
from avssl.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("method", ["contrastive", "l3", "avenet", "avolnet"])
def test_train_writes_run_and_json(method, tiny_train_args, capsys):
    args = ["--config", str(ROOT / f"configs/{method}.yaml"), *tiny_train_args()]
    assert train.main(args) == 0
    summary = last_json(capsys.readouterr().out)
    run = Path(summary["run_dir"])
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt"):
        assert (run / name).is_file(), name
    assert set(summary["val"]) == {"accuracy", "accuracy_easy", "accuracy_hard"}
    assert summary["clips_per_s"] > 0 and summary["seconds"] > 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [2, 4, 6]
    assert {r["split"] for r in rows} == {"train", "val"}
    # the best checkpoint is the best on validation
    val = [r for r in rows if r["split"] == "val"]
    best = load_checkpoint(run / "best.pt")
    assert best["best"]["accuracy"] == max(r["accuracy"] for r in val)

    assert evaluate.main(["avc", "--checkpoint", str(run), "--no-progress"]) == 0
    res = last_json(capsys.readouterr().out)
    assert {"accuracy", "accuracy_easy", "accuracy_hard", "n"} <= set(res)
    assert res["n"] == 4 * 4 and res["split"] == "test"
    assert (run / "report.md").read_text().count("AVC accuracy") == 1


def test_diverged_or_displaced_checkpoints_are_one_line_errors(tiny_train_args, tmp_path, capsys):
    # weights that turn NaN between two validations: the validation stops the run
    sets = ("train.lr=1e8", "train.weight_decay=0", "train.warmup_steps=0", "train.eval_every=2",
            "train.steps=4")  # fmt: skip
    args = ["--config", str(ROOT / "configs/l3.yaml"), *tiny_train_args(*sets)]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the world's build note
    assert err.startswith("error: ") and re.search(r" at step [24]; stopped\. ", err)
    assert "holds NaN or inf" in err or "the validation scores are not finite" in err
    # a checkpoint holding NaN is refused by every command that loads it
    assert train.main(tiny_train_args("train.steps=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    state = load_checkpoint(run / "last.pt")
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = torch.full_like(state["model"][key], float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(state, bad)
    assert evaluate.main(["retrieval", "--checkpoint", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "weights are not finite" in err and str(bad) in err
    # a checkpoint whose (relative) data.root is not found from here says where it came from
    state = load_checkpoint(run / "last.pt")
    state["config"]["data"]["root"] = "elsewhere/manifest.jsonl"
    torch.save(state, bad)
    assert evaluate.main(["avc", "--checkpoint", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: elsewhere/manifest.jsonl: no manifest found (the checkpoint's data.root, "
        "relative to where it was trained; pass --data MANIFEST)"
    )


def test_new_run_never_overwrites(tiny_train_args, capsys):
    assert train.main(tiny_train_args("train.steps=1")) == 0
    first = last_json(capsys.readouterr().out)["run_dir"]
    assert train.main(tiny_train_args("train.steps=1")) == 0
    second = last_json(capsys.readouterr().out)["run_dir"]
    assert first != second and Path(first).is_dir() and Path(second).is_dir()


def test_run_training_returns_the_summary_train_py_prints(tiny_cache, tmp_path, capsys):
    """The library's training entry point returns the summary and prints nothing on stdout;
    ``train.py`` prints that summary as its last line."""
    from avssl.cli import json_line
    from avssl.train.cli import run_training

    run = tmp_path / "run"
    sets = [*TINY, f"train.runs_dir={tmp_path / 'runs'}", "train.steps=2"]
    summary = run_training(None, sets, run_dir=run, progress=False)
    assert capsys.readouterr().out == ""
    assert Path(summary["run_dir"]) == run and summary["step"] == 2
    assert summary["interrupted"] is False and (run / "last.pt").is_file()
    # a finished run resumed trains nothing: the same summary either way, but for its seconds
    again = json.loads(json_line(run_training(resume=run, progress=False)))
    assert capsys.readouterr().out == ""
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    printed = last_json(capsys.readouterr().out)
    assert printed.pop("seconds") >= 0 and again.pop("seconds") >= 0 and printed == again
    with pytest.raises(TypeError, match="one string"):
        run_training(None, "train.steps=2")


def test_the_summary_line_is_printed_under_the_sigterm_guard(
    tiny_train_args, tmp_path, monkeypatch
):
    """A SIGTERM while ``train.py`` prints its summary is its one-line ``error:`` (exit 143), as
    during training, not the default handler's silent kill."""
    import signal

    from avssl.train import cli as train_cli

    handlers = []

    def json_line(summary):
        handlers.append(signal.getsignal(signal.SIGTERM))
        return "{}"

    run = tmp_path / "run"
    assert train.main(["--run-dir", str(run), *tiny_train_args("train.steps=1")]) == 0
    monkeypatch.setattr(train_cli, "json_line", json_line)
    before = signal.getsignal(signal.SIGTERM)
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    assert len(handlers) == 1 and handlers[0] not in (signal.SIG_DFL, before)
    assert signal.getsignal(signal.SIGTERM) == before  # given back afterwards


def test_loss_goes_down(tiny_train_args, capsys):
    # batch 8 (of 12 clips): single-batch losses of batch 4 are too noisy to compare
    args = tiny_train_args(
        "train.steps=40", "train.eval_every=40", "train.log_every=5", "train.batch_size=8"
    )
    assert train.main(args) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2])


def test_reading_only_the_models_audio_keys_trains_the_same_weights(
    tiny_train_args, capsys, monkeypatch
):
    from avssl.data.pairs import AUDIO_KEYS
    from avssl.models.contrastive import ContrastiveAV

    assert train.main(tiny_train_args("name=declared")) == 0
    declared = last_json(capsys.readouterr().out)
    monkeypatch.setattr(ContrastiveAV, "audio_keys", lambda self: AUDIO_KEYS)
    assert train.main(tiny_train_args("name=every-key")) == 0
    every = last_json(capsys.readouterr().out)
    assert ContrastiveAV.audio_keys(None) == AUDIO_KEYS  # the patch was in force
    assert declared["weights_digest"] == every["weights_digest"]
    assert declared["averaged_weights_digest"] is None  # no train.ema_decay


def test_logged_rate_leaves_out_validation_and_checkpoints(tiny_train_args, capsys, monkeypatch):
    import avssl.train.loop as loop

    class Clock:
        """The loop's ``time`` module, whose wall clock each validation and each checkpoint
        moves 1000 s on (instead of sleeping)."""

        offset = 0.0

        def __getattr__(self, name):
            return getattr(time, name)

        def time(self) -> float:
            return time.time() + self.offset

    clock = Clock()

    def slow(real):
        def call(*args, **kwargs):
            clock.offset += 1000.0
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(loop, "score_pairs", slow(loop.score_pairs))
    monkeypatch.setattr(loop, "save_checkpoint", slow(loop.save_checkpoint))
    assert train.main(tiny_train_args("train.eval_every=2", "train.log_every=1")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # each window is one step of 4 clips, in real seconds: far less than the 2000 s or more of
    # validation and checkpoints before steps 3 and 5
    windows = {r["step"]: 4 / r["clips_per_s"] for r in rows if r["split"] == "train"}
    assert len(windows) == 6 and max(windows.values()) < 500, windows
    assert clock.offset >= 6000  # the patches were in force: 3 validations, 3 last.pt (and best.pt)


@pytest.mark.parametrize("decay", [(), ("train.weight_decay=0.2", "train.decay_all=false")])
def test_resume_equals_straight_run(decay, tiny_train_args, capsys):
    common = ("train.schedule=constant", "train.eval_every=4", *decay)  # 1 or 2 AdamW groups
    assert train.main(tiny_train_args("train.steps=8", *common)) == 0
    straight = last_json(capsys.readouterr().out)
    assert train.main(tiny_train_args("train.steps=4", *common)) == 0
    half = last_json(capsys.readouterr().out)
    assert train.main(["--resume", half["run_dir"], "--set", "train.steps=8", "--no-progress"]) == 0
    resumed = last_json(capsys.readouterr().out)
    assert resumed["run_dir"] == half["run_dir"] and resumed["step"] == 8
    a = load_checkpoint(Path(straight["run_dir"]) / "last.pt")["model"]
    b = load_checkpoint(Path(resumed["run_dir"]) / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_resume_from_best_pt_would_overwrite_last_pt(tiny_train_args, capsys):
    assert train.main(tiny_train_args("train.steps=4", "train.eval_every=2")) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    last = (run / "last.pt").read_bytes()
    assert train.main(["--resume", str(run / "best.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "best.pt" in err and "overwrite the last.pt" in err
    assert (run / "last.pt").read_bytes() == last


@pytest.mark.parametrize("flag", ["--resume", "--checkpoint"])
def test_bad_checkpoint_one_line(flag, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    if flag == "--resume":
        code = train.main(["--resume", str(bad)])
    else:
        code = evaluate.main(["avc", "--checkpoint", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and str(bad) in err and len(err.strip().splitlines()) == 1


def test_ddp_two_processes_identical(tiny_train_args, tiny_cache, tmp_path):
    args = tiny_train_args("train.batch_size=2")
    proc, digests = torchrun_two_ranks(args, tiny_cache, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(digests) == {"0", "1"}, proc.stderr[-2000:]
    assert digests["0"] == digests["1"]
    summary = last_json(proc.stdout)
    assert summary["weights_digest"] == digests["0"]


SIGNAL_ONE_RANK = """
import os, signal, sys
sys.path.insert(0, {root!r})
import avssl.train.loop as loop
import train

plain = loop.lr_factor


def lr_factor(step, cfg, total=None):  # asked once per step, before its forward pass
    if step == 3 and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGINT)
    return plain(step, cfg, total)


loop.lr_factor = lr_factor
sys.exit(train.main(sys.argv[1:]))
"""


def test_ddp_a_signal_to_one_rank_stops_both_at_one_step(tiny_train_args, tiny_cache, tmp_path):
    # rank 1 alone is interrupted during step 4; rank 0 must stop with it, not wait for it
    script = tmp_path / "signal_rank1.py"
    script.write_text(SIGNAL_ONE_RANK.format(root=str(Path(train.__file__).parent)))
    args = tiny_train_args("train.batch_size=2", "train.steps=40", "train.eval_every=100")
    proc, digests = torchrun_two_ranks(args, tiny_cache, tmp_path, script)
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], proc.stderr[-3000:]
    # rank 0 alone names the folder (the one it chose) in the resume message
    assert proc.stderr.count("SIGINT: stopped at step 4;") == 1, proc.stderr[-3000:]
    last = next((tmp_path / "runs").glob("*/last.pt"))
    assert load_checkpoint(last)["step"] == 4
