"""A run that fails before its first checkpoint leaves nothing of its own behind.

In an empty ``--run-dir`` folder the user made, it removes the files it wrote and leaves the
folder, empty; a folder with anything else in it, or a run that checkpointed, is kept.
"""

from __future__ import annotations

from conftest import poison_loss

import train
from avssl.train.cli import discard_failed_run


def _nan_error(capsys) -> str:
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if x.startswith("error")]  # (others: progress notes)
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_failed_run_empties_the_users_empty_run_dir(tiny_train_args, tmp_path, capsys, monkeypatch):
    # config.yaml is written, and metrics.jsonl at step 2, before the failure at step 2
    args = tiny_train_args("train.eval_every=100", "train.log_every=2")
    mine = tmp_path / "mine"
    mine.mkdir()
    seen = {}
    poison_loss(monkeypatch, 3, lambda: seen.update(files=sorted(p.name for p in mine.iterdir())))
    assert train.main([*args, "--run-dir", str(mine)]) == 2
    assert _nan_error(capsys).startswith("error: loss is nan at step 2; stopped. No checkpoint yet")
    assert seen["files"] == ["config.yaml", "metrics.jsonl"]  # what the run wrote ...
    assert mine.is_dir() and not any(mine.iterdir())  # ... is gone; the user's folder stays
    monkeypatch.undo()
    # so the same --run-dir runs at once
    assert train.main([*args, "--run-dir", str(mine)]) == 0
    capsys.readouterr()
    assert (mine / "last.pt").is_file() and (mine / "config.yaml").is_file()


def test_empty_named_folder_under_runs_dir_is_emptied_not_removed(
    tiny_train_args, tmp_path, capsys, monkeypatch
):
    """Without --run-dir an existing empty ``runs/NAME`` is reused; a failure leaves it empty."""
    run = tmp_path / "runs" / "taken"
    run.mkdir(parents=True)
    poison_loss(monkeypatch, 1)
    assert train.main(tiny_train_args("name=taken")) == 2
    assert _nan_error(capsys).startswith("error: loss is nan at step 0; stopped.")
    assert run.is_dir() and not any(run.iterdir())
    assert sorted(p.name for p in run.parent.iterdir()) == ["taken"]  # no taken-2 either


def test_failed_run_keeps_what_it_did_not_write(tiny_train_args, tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    # a file put into the folder while the run goes is not the run's: it stays
    poison_loss(monkeypatch, 1, lambda: (mine / "notes.txt").write_text("mine"))
    assert train.main([*tiny_train_args(), "--run-dir", str(mine)]) == 2
    _nan_error(capsys)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "mine"


def test_failed_run_after_a_checkpoint_keeps_everything(
    tiny_train_args, tmp_path, capsys, monkeypatch
):
    mine = tmp_path / "mine"
    mine.mkdir()
    poison_loss(monkeypatch, 3)  # best.pt at step 1 (eval_every=1), the failure at step 2
    assert train.main([*tiny_train_args("train.eval_every=1"), "--run-dir", str(mine)]) == 2
    assert "last good checkpoint" in _nan_error(capsys)
    names = {p.name for p in mine.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "best.pt"} <= names


def test_non_empty_users_folder_is_refused_and_untouched(tiny_train_args, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("the user's own\n")
    assert train.main([*tiny_train_args(), "--run-dir", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {mine}: run directory exists and is not empty (to continue the run in it: "
        "--resume; else an empty or a new folder)"
    ]
    assert [p.name for p in mine.iterdir()] == ["config.yaml"]
    assert (mine / "config.yaml").read_text() == "the user's own\n"


def test_discard_failed_run_only_for_a_run_that_began_empty(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "metrics.jsonl", "notes.txt"):
        (run / name).write_text("x")
    discard_failed_run(run, created=False, started_empty=False)  # e.g. a resumed run
    assert len(list(run.iterdir())) == 3
    discard_failed_run(run, created=False, started_empty=True)  # the user's folder stays
    assert [p.name for p in run.iterdir()] == ["notes.txt"]
    (run / "notes.txt").unlink()
    discard_failed_run(run, created=False, started_empty=True)
    assert run.is_dir()
    discard_failed_run(run, created=True, started_empty=True)  # the run's own folder goes
    assert not run.exists()


def test_runs_started_together_take_different_folders(tmp_path):
    # the folder stays otherwise empty until the data are loaded: a second run started meanwhile
    # (seeds launched at once) must not take it too
    from avssl.config import load_config
    from avssl.errors import AvsslError
    from avssl.train.cli import prepare_run_dir

    cfg = load_config(None, [f"train.runs_dir={tmp_path / 'runs'}"])
    first, made = prepare_run_dir(cfg, None)
    second, _ = prepare_run_dir(cfg, None)
    assert made and first.name == "default" and second.name == "default-2"
    assert (first / "config.yaml").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    assert prepare_run_dir(cfg, str(mine)) == (mine, False)
    try:
        prepare_run_dir(cfg, str(mine))
        raise AssertionError("a claimed --run-dir was handed out twice")
    except AvsslError as err:
        assert "not empty" in str(err)


def test_sigterm_while_the_data_loads_discards_the_run(
    tiny_train_args, tmp_path, capsys, monkeypatch
):
    # before the training loop's stop flag a SIGTERM ended the process at once, silently, and
    # left a folder holding config.yaml alone (which --resume refuses); now as Ctrl-C there
    import os
    import signal

    import avssl.train.loop as loop

    real = loop.load_split

    def load_then_terminate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "load_split", load_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    assert train.main([*tiny_train_args(), "--set", "name=early"]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)" and "Traceback" not in err
    assert not (tmp_path / "runs" / "early").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is given back


def test_failed_run_removes_the_parent_folders_it_made(tiny_train_args, tmp_path, capsys):
    """The run folder goes, and so do the folders above it that the run made (a fresh clone's
    ``runs/``, the ``a/b`` of ``--run-dir new/a/b``): they were left behind, empty. Those that
    were there before stay."""
    (tmp_path / "old").mkdir()
    bad = tiny_train_args("data.synthetic.sample_rate=20000")  # refused once the folder is made
    for extra in (["--run-dir", str(tmp_path / "old" / "new" / "a" / "b")], []):
        assert train.main([*bad, *extra]) == 2
        assert _nan_error(capsys).startswith("error: data.synthetic.sample_rate: 20000 Hz")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
        assert not any((tmp_path / "old").iterdir())
