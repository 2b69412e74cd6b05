"""Guards around a run's folder and checkpoints: a stop just after the folder is claimed, two
processes on one run, a checkpoint that cannot be written or that holds NaN weights, a new seed
on resume, the temporary files a killed process leaves, and the resume command a stop prints."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from bad_media import last_json
from conftest import REPO

import train
from avssl.errors import AvsslError, CheckpointError
from avssl.train import cli
from avssl.train.checkpoint import load_checkpoint, save_checkpoint
from avssl.train.resume import resume_command
from avssl.train.run_dir import clear_stale_temps, run_lock


def _resume(run: Path, *sets: str) -> int:
    return train.main(
        ["--resume", str(run), *[a for s in sets for a in ("--set", s)], "--no-progress"]
    )


@pytest.fixture
def stopped_run(tiny_train_args, capsys):
    """A tiny run trained 2 steps of 6, with its last.pt and best.pt."""
    args = tiny_train_args("train.steps=2", "train.eval_every=2")
    assert train.main(args) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    return run


def test_a_sigterm_just_after_the_folder_is_claimed_removes_it(
    tiny_train_args, tmp_path, capsys, monkeypatch
):
    real = cli.run_lock

    def lock_then_sigterm(run_dir):  # the moment the loop's modules were still importing
        os.kill(os.getpid(), signal.SIGTERM)
        return real(run_dir)

    monkeypatch.setattr(cli, "run_lock", lock_then_sigterm)
    run = tmp_path / "claimed"
    assert train.main([*tiny_train_args(), "--run-dir", str(run)]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert not run.exists()


def test_a_second_process_on_the_same_run_is_refused(stopped_run, capsys):
    with run_lock(stopped_run):  # as a process training it holds it
        assert _resume(stopped_run, "train.steps=4") == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {stopped_run}: another process is training this run (it holds the run's "
        "lock); wait for it to stop, or stop it first"
    )
    assert load_checkpoint(stopped_run / "last.pt")["step"] == 2
    assert _resume(stopped_run, "train.steps=4") == 0  # the lock went with its holder


def test_a_new_seed_on_resume_is_refused(stopped_run, capsys):
    assert _resume(stopped_run, "train.steps=4", "train.seed=5") == 2
    assert "train.seed: cannot be changed on resume" in capsys.readouterr().err


def test_nan_weights_are_refused_before_any_data_is_loaded(stopped_run, capsys):
    state = load_checkpoint(stopped_run / "last.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name].view(-1)[0] = float("nan")
    state.pop("path")
    save_checkpoint(stopped_run / "last.pt", state)
    assert _resume(stopped_run, "train.steps=4") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {stopped_run / 'last.pt'}: weights are not finite (model {name}")


def test_a_damaged_last_pt_points_at_the_best_pt_beside_it(stopped_run, capsys):
    last = stopped_run / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    assert _resume(stopped_run) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {last}: ") and err.endswith(
        "the best.pt beside it is an earlier state of the run: copy it alone into a new folder "
        "and resume that"
    )


def test_stale_temporary_files_go_and_others_stay(tmp_path):
    for name in (".last.pt.tmp123", ".metrics.jsonl.tmp9", ".best.pt.tmpx", "notes.tmp1"):
        (tmp_path / name).write_bytes(b"x")
    clear_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.pt.tmpx", "notes.tmp1"]


def test_a_checkpoint_that_cannot_be_written_is_one_line(tmp_path):
    # a file-size limit stands for a full disk: torch's zip writer raises RuntimeError
    script = textwrap.dedent(
        f"""
        import resource, torch
        from avssl.train.checkpoint import save_checkpoint
        from avssl.errors import CheckpointError
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        try:
            save_checkpoint({str(tmp_path / "last.pt")!r}, {{"w": torch.zeros(100_000)}})
        except CheckpointError as err:
            print(err)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{tmp_path / 'last.pt'}: could not be written (")
    assert out.stdout.strip().endswith("is the disk full?")
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_save_checkpoint_turns_only_runtime_errors_into_checkpoint_errors(tmp_path, monkeypatch):
    def failing_save(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 0")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointError, match=r"unexpected pos 1 vs 0\); is the disk full\?"):
        save_checkpoint(tmp_path / "x.pt", {})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "env,want",
    [
        ({}, "python train.py --resume runs/x"),
        ({"TORCHELASTIC_RUN_ID": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2"},
         "torchrun --standalone --nproc_per_node 2 train.py --resume runs/x"),
        ({"TORCHELASTIC_RUN_ID": "1", "LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "8"},
         "torchrun --nproc_per_node 4 (and the rest of the same launch: 8 processes in all) "
         "train.py --resume runs/x"),
    ],
)  # fmt: skip
def test_the_resume_command_is_launched_as_the_run_was(env, want, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    for key in ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resume_command(Path("runs/x")) == want


@pytest.mark.parametrize(
    "argv0,want",
    [
        ("/home/u/.venv/bin/avssl", "avssl train"),
        (str(REPO / "avssl" / "__main__.py"), "python -m avssl train"),
        (str(REPO / "avssl" / "cli.py"), "python -m avssl train"),  # python -m avssl.cli train
        (str(REPO / "train.py"), "python train.py"),
        ("train.py", "python train.py"),
    ],
)
def test_the_resume_hint_names_the_command_the_run_was_started_with(argv0, want, monkeypatch):
    """``avssl train`` from an installed package must not be told to run ``python train.py``,
    which exists only in a clone."""
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(sys, "argv", [argv0])
    assert resume_command(Path("runs/x")) == f"{want} --resume runs/x"


@pytest.mark.parametrize(
    "argv0,want",
    [
        ("/home/u/.venv/bin/avssl", "--no-python avssl train"),  # torchrun --no-python avssl
        (str(REPO / "avssl" / "__main__.py"), "-m avssl train"),  # torchrun -m avssl
        (str(REPO / "train.py"), "train.py"),
    ],
)
def test_under_torchrun_the_resume_hint_names_the_program_the_run_was_started_with(
    argv0, want, monkeypatch
):
    """``torchrun -m avssl train`` from an installed package must not be told to run
    ``train.py``, which exists only in a clone."""
    for key, value in {
        "TORCHELASTIC_RUN_ID": "1",
        "LOCAL_WORLD_SIZE": "2",
        "WORLD_SIZE": "2",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", [argv0])
    want = f"torchrun --standalone --nproc_per_node 2 {want} --resume runs/x"
    assert resume_command(Path("runs/x")) == want


def test_the_run_lock_is_exclusive_across_open_files(tmp_path):
    with (
        run_lock(tmp_path),
        pytest.raises(AvsslError, match="another process is training this run"),
        run_lock(tmp_path),
    ):
        pass
    with run_lock(tmp_path):  # released
        pass


def test_a_stop_right_after_the_claim_removes_it(tiny_train_args, tmp_path, capsys, monkeypatch):
    import types

    from avssl.train import run_dir as rd

    def close_then_sigterm(fd):  # the claim file is made; the run is stopped there
        os.close(fd)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(
        rd, "os", types.SimpleNamespace(**{**vars(os), "close": close_then_sigterm})
    )
    run = tmp_path / "claimed"
    assert train.main([*tiny_train_args(), "--run-dir", str(run)]) == 128 + signal.SIGTERM
    assert not run.exists()


def test_a_killed_holders_forked_children_do_not_keep_the_lock(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    script = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from avssl.folder_lock import hold_folder
        with hold_folder(Path({str(folder)!r}), "busy"):
            ready = Path({str(tmp_path / "child")!r})
            if os.fork() == 0:  # a DataLoader worker outliving its parent for a while
                ready.write_text(str(os.getpid()))
                time.sleep(30)
                os._exit(0)
            while not ready.exists() or not ready.read_text():
                time.sleep(0.01)
            os._exit(9)  # killed: no cleanup
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    child = int((tmp_path / "child").read_text())
    try:
        assert out.returncode == 9
        os.kill(child, 0)  # still alive
        with run_lock(folder):  # yet the lock is free
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_forked_child_leaving_the_block_closes_nothing_of_its_own(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from avssl.folder_lock import hold_folder
        with hold_folder(Path({str(tmp_path)!r}), "busy"):
            pid = os.fork()
            if pid == 0:
                mine = os.open({str(tmp_path / "f")!r}, os.O_CREAT | os.O_WRONLY)
        if pid == 0:  # the block's end must not close the child's file of the same number
            os.write(mine, b"ok")
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "f").read_bytes() == b"ok"


def test_a_refused_lock_leaves_no_descriptor_open(tmp_path):
    import os

    from avssl.errors import AvsslError
    from avssl.folder_lock import hold_folder

    with hold_folder(tmp_path, "busy"):
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(3):
            with pytest.raises(AvsslError, match="busy"), hold_folder(tmp_path, "busy"):
                pass
        assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("command", [["train.py"], ["-m", "avssl", "train"]])
def test_a_ctrl_c_during_start_up_is_one_line(command, tmp_path):
    """A Ctrl-C while torch is being imported (the first seconds) is ``error: interrupted``,
    not a traceback; one that lands later stops the run the usual way, also without one."""
    from conftest import REPO, TINY

    sets = [*TINY, f"train.runs_dir={tmp_path / 'runs'}"]
    args = [sys.executable, *command, *[a for s in sets for a in ("--set", s)], "--no-progress"]
    proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{proc.pid}/maps")
    for _ in range(3000):  # until torch's library is loaded: its Python modules come next
        if proc.poll() is not None or "libtorch" in maps.read_text():
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=300)[1]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # 130: "error: interrupted", or "SIGINT: stopped at step N"; 0: it landed in the last step
    assert proc.returncode in (0, 130), err


# ``python -c _INTERRUPTED_IMPORT ENTRY ARGS`` runs ENTRY as ``python ENTRY ARGS`` (a script, or a
# module as -m runs it) with a Ctrl-C arriving while numpy imports: every command's module
# imports it, avssl.cli does not
_INTERRUPTED_IMPORT = """
import runpy, sys

class Interrupt:
    def find_spec(name, path=None, target=None):
        if name == "numpy":
            raise KeyboardInterrupt

sys.meta_path.insert(0, Interrupt)
entry, sys.argv = sys.argv[1], sys.argv[1:]
if entry.endswith(".py"):
    runpy.run_path(entry, run_name="__main__")
else:
    runpy.run_module(entry, run_name="__main__", alter_sys=True)
"""


_SCRIPTS = ["train.py", "evaluate.py"]
_SCRIPTS += [p.relative_to(REPO).as_posix() for p in sorted(REPO.glob("datasets/*/*.py"))]


@pytest.mark.parametrize(
    "entry", [*([s] for s in _SCRIPTS), ["avssl", "inspect"], ["avssl", "index"]], ids=" ".join
)
def test_a_ctrl_c_while_the_command_imports_is_one_line(entry):
    """Every entry point imports its command's module under :func:`avssl.cli.run_guarded`: a
    Ctrl-C while numpy (or torch) imports is ``error: interrupted`` and status 130."""
    args = [sys.executable, "-c", _INTERRUPTED_IMPORT, *entry, "--help"]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (130, "error: interrupted\n"), done.stderr


def test_a_refused_process_leaves_the_folder_another_made_and_holds(tmp_path, monkeypatch):
    # two processes on a new folder: both see no folder, the other one locks it first; the
    # refused one removed the (still empty) folder it thought it had made, under the other
    import contextlib

    from avssl import folder_lock

    folder = tmp_path / "out"
    real = folder_lock.hold_folder
    other = contextlib.ExitStack()

    def locked_first_by_another(path, busy):
        other.enter_context(real(path, "held"))
        return real(path, busy)

    monkeypatch.setattr(folder_lock, "hold_folder", locked_first_by_another)
    with other:
        refused = pytest.raises(AvsslError, match="busy")
        with refused, folder_lock.hold_output_folder(folder, "busy", "a folder"):
            pytest.fail("the lock was taken")
        assert folder.is_dir()
    monkeypatch.undo()
    # the holder's own refusal, inside the lock, still removes the empty folder it made
    refused = pytest.raises(AvsslError, match="bad input")
    with refused, folder_lock.hold_output_folder(folder / "new", "busy", "a folder"):
        raise AvsslError("bad input")
    assert not (folder / "new").exists() and folder.is_dir()


def test_a_sigterm_while_train_py_imports_its_modules_is_one_line(monkeypatch, capsys):
    """torch's import takes seconds: a SIGTERM then is ``error: terminated (SIGTERM)`` (143), as
    the README says of a stop before the first step, not the default handler's silent kill."""
    import importlib

    real = importlib.import_module

    def import_then_sigterm(name, *args):
        if name == "avssl.train.cli":
            os.kill(os.getpid(), signal.SIGTERM)  # handled before the next bytecode
            raise AssertionError("a SIGTERM while train.py imports was not made an interrupt")
        return real(name, *args)

    def recorded(signum, frame):  # instead of the default handler, which would end pytest
        pass

    old = signal.signal(signal.SIGTERM, recorded)
    try:
        monkeypatch.setattr(importlib, "import_module", import_then_sigterm)
        assert train.main(["--no-progress"]) == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is recorded  # given back
    finally:
        signal.signal(signal.SIGTERM, old)
    assert capsys.readouterr().err.strip().splitlines() == ["error: terminated (SIGTERM)"]


def test_the_guard_set_before_torch_imports_is_torch_free():
    """``run_entry`` sets the SIGTERM guard before the command imports torch: the guard's own
    module (shared with the commands that keep it while they run) must not import torch."""
    code = "import sys, avssl.cli, avssl.sigterm; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
