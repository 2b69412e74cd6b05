"""An avssl error raised in a DataLoader worker reaches the user as one line."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from avssl.cli import run_guarded
from avssl.errors import AvsslError, MediaError


class Failing(Dataset):
    def __init__(self, error: Exception):
        self.error = error

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise self.error
        return torch.zeros(1)


@pytest.mark.parametrize(
    "error,line",
    [
        (AvsslError("cache/shard-000001.tar: damaged or truncated shard"), None),
        (MediaError("clips/a.mp4", "truncated or corrupt"), "clips/a.mp4: truncated or corrupt"),
    ],
)
def test_a_worker_error_is_one_line(capsys, error, line):
    def command(argv):
        for _ in DataLoader(Failing(error), batch_size=1, num_workers=1):
            pass

    assert run_guarded(command, []) == 2
    err = capsys.readouterr().err
    assert err == f"error: {line or error}\n"


def test_other_runtime_errors_still_raise():
    def command(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_guarded(command, [])
