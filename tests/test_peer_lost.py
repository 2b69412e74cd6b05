"""A collective that fails because another process of a distributed run is gone: one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import torch

from avssl.cli import peer_lost, run_guarded

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import torch, torch.distributed as dist
    from avssl.cli import run_guarded

    def command(argv):
        dist.init_process_group("gloo")
        dist.barrier()  # both ranks connected: the failure comes in the collective below
        if dist.get_rank() == 1:
            os._exit(3)  # as a rank stopped by a signal before the first step
        time.sleep(1)
        parts = [torch.zeros(2) for _ in range(2)]
        dist.all_gather(parts, torch.ones(2))

    sys.exit(run_guarded(command, []))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rank_gone_is_one_line_on_the_others(tmp_path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            env={**env, "RANK": str(r)},
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for r in (0, 1)
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [2, 3]
    lines = errs[0].strip().splitlines()
    assert len(lines) == 1, errs[0]
    assert lines[0].startswith("error: another process of the distributed run stopped or failed")
    assert lines[0].endswith("see its output") and "Traceback" not in errs[0]


def test_other_runtime_errors_are_not_taken_for_a_lost_peer():
    assert peer_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    backend = torch.distributed.DistBackendError("NCCL error: remote process exited")
    assert peer_lost(backend).startswith("another process of the distributed run")
    assert run_guarded(lambda argv: (_ for _ in ()).throw(backend), []) == 2


def test_a_backend_error_naming_no_lost_process_is_not_blamed_on_one(capsys):
    backend = torch.distributed.DistBackendError("NCCL error: unhandled cuda error\ndetails")
    assert peer_lost(backend) == (
        "a collective operation of the distributed run failed (NCCL error: unhandled cuda error)"
    )
    assert run_guarded(lambda argv: (_ for _ in ()).throw(backend), []) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: a collective operation of the distributed run failed "
        "(NCCL error: unhandled cuda error)"
    ]
