"""Checkpoints: atomic writes, ``weights_only`` loads, config saved inside.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(..., weights_only=True)``; a pickle that would run code is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from avssl.config import Config, config_from_dict
from avssl.errors import AvsslError, CheckpointError

FORMAT = "avssl-checkpoint-v1"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` via a temporary file and ``os.replace`` (crash-safe)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, empty, not a PyTorch file, corrupt, unsafe (would execute
            code) or foreign; each with a short reason, torch's warnings silenced.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(path, "run directory has no best.pt or last.pt")
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(ZIP_MAGIC))
    except OSError as err:
        raise CheckpointError(path, f"cannot read ({err.strerror})") from None
    if magic != ZIP_MAGIC:
        raise CheckpointError(path, "not a PyTorch checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle details before failing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        reason = (
            "refused: holds objects other than tensors and plain values (loading could run code)"
        )
        raise CheckpointError(path, reason) from None
    except Exception:  # torch.load raises many types on corrupt input; all mean the same
        raise CheckpointError(path, "corrupt or truncated checkpoint file") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(path, "not an avssl checkpoint")
    state["path"] = str(path)
    return state


def checkpoint_config(state: dict) -> Config:
    """The resolved :class:`Config` stored inside a checkpoint."""
    try:
        return config_from_dict(state["config"])
    except (KeyError, TypeError, AvsslError) as err:
        raise CheckpointError(state.get("path", "?"), f"bad config in checkpoint ({err})") from None


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu"):
    """Rebuild the model of a checkpoint in eval mode. Returns ``(model, config, state)``."""
    from avssl.models import build_model

    state = load_checkpoint(path)
    cfg = checkpoint_config(state)
    model = build_model(cfg.model, cfg.data, cfg.loss)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        msg = str(err).splitlines()[0][:160]
        raise CheckpointError(state["path"], f"weights do not fit the model ({msg})") from None
    for name, t in model.state_dict().items():
        # a diverged run's weights would give NaN scores, or metrics that merely look plausible
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(
                state["path"], f"weights are not finite ({name} holds NaN or inf): the run diverged"
            )
    return model.to(device).eval(), cfg, state


def weights_digest(model: nn.Module) -> str:
    """Short SHA-1 of every learnt parameter (identical weights give identical digests).

    Buffers are left out: under DDP each rank's BatchNorm running statistics follow its own
    last batch (DDP broadcasts rank 0's at the start of each forward pass).
    """
    h = hashlib.sha1()
    for name, t in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
