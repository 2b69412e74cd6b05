"""Checkpoints: atomic writes, ``weights_only`` loads, config saved inside.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(..., weights_only=True)``; a pickle that would run code is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import nn

from avssl.atomic_write import replacing
from avssl.config import Config, config_from_dict
from avssl.config_checks import config_error
from avssl.errors import (
    AvsslError,
    CheckpointError,
    ConfigError,
    UnknownMethodError,
)
from avssl.torch_file import TorchFileError, load_torch_file

FORMAT = "avssl-checkpoint-v1"
# why a run folder gave its last.pt (a run stopped before its first validation saves no best.pt)
NO_BEST = "no best.pt (the run stopped before its first validation?); last.pt used"
WEIGHT_KEYS = ("model", "train_model")  # state dicts: the (averaged) weights, the trained ones
_LOAD_REASONS = {  # TorchFileError.kind -> the reason a CheckpointError gives
    "unreadable": "cannot read ({})",
    "empty": "empty file",
    "not_torch": "not a PyTorch checkpoint file",
    "unsafe": "refused: holds objects other than tensors and plain values (loading could run code)",
    "damaged": "corrupt or truncated checkpoint file",
}


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` via a temporary file and ``os.replace`` (crash-safe).

    A write that fails (a full disk, a second Ctrl-C) leaves the previous ``path`` as it was and
    removes its partial temporary file.

    Raises:
        CheckpointError: torch's writer failed (it raises ``RuntimeError``, not ``OSError``,
            when the disk is full or a file-size limit is reached).
        OSError: the temporary file could not be created or renamed.
    """
    path = Path(path)
    try:
        with replacing(path) as tmp:
            torch.save({"format": FORMAT, **state}, tmp)
    except RuntimeError as err:  # torch's zip writer: a full disk or a file-size limit
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(path, f"could not be written ({first}); is the disk full?") from None
    return path


def no_best_note(path: str | os.PathLike | None) -> str | None:
    """Why :func:`load_checkpoint` of ``path`` reads a checkpoint not chosen on validation, or
    None: ``"RUN: no best.pt (...); last.pt used"`` when ``path`` is a run folder holding a
    ``last.pt`` but no ``best.pt`` (a run stopped before its first validation).

    The library says nothing itself; the commands print this as a ``note:`` line on stderr
    (:func:`avssl.cli_checkpoint.note_checkpoint`).

    Args:
        path: a checkpoint file or run folder, as given to :func:`load_checkpoint`, or None.
    """
    if path is None:
        return None
    path = Path(path)
    if path.is_dir() and not (path / "best.pt").is_file() and (path / "last.pt").is_file():
        return f"{path}: {NO_BEST}"
    return None


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    A run folder gives its ``best.pt``, else its ``last.pt`` (:func:`no_best_note` says so).

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
    try:
        state = load_torch_file(path, map_location=map_location)
    except TorchFileError as err:
        raise CheckpointError(path, _LOAD_REASONS[err.kind].format(err.detail)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(path, "not an avssl checkpoint")
    problem = _field_error(state)
    if problem:
        raise CheckpointError(path, problem)
    state["path"] = str(path)
    return state


def _kind(value) -> str:
    """``a str``, ``a list``, ...: what a value is, for a message."""
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _field_error(state: dict) -> str | None:
    """What is wrong with the type of a checkpoint's known entries, or None.

    ``config`` must be a mapping, ``model`` and ``train_model`` (the weights) mappings of names
    to tensors, ``step`` an integer; each is checked only when present (a checkpoint need not
    hold all of them).
    """
    if "config" in state and not isinstance(state["config"], dict):
        return f"bad config in checkpoint (it is {_kind(state['config'])}, not a mapping)"
    for key in WEIGHT_KEYS:
        if key not in state:
            continue
        weights = state[key]
        if not isinstance(weights, dict):
            return f"bad weights in checkpoint ({key!r} is {_kind(weights)}, not a mapping)"
        for name, tensor in weights.items():
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                return (
                    f"bad weights in checkpoint ({key!r} holds {_kind(tensor)} at {name!r}, "
                    "not a tensor)"
                )
    step = state.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        return f"bad step in checkpoint ({_kind(step)}, not an integer)"
    return None


def checkpoint_config(state: dict) -> Config:
    """The resolved :class:`Config` stored inside a checkpoint, with the range checks a config
    file gets (:mod:`avssl.config_checks`).

    Raises:
        CheckpointError: no config stored, or one that is malformed or out of range, naming
            the checkpoint file.
    """
    path = state.get("path", "?")
    if "config" not in state:
        raise CheckpointError(path, "no config stored in checkpoint")
    try:
        cfg = config_from_dict(state["config"])
    except (KeyError, TypeError, AttributeError, AvsslError) as err:
        raise CheckpointError(path, f"bad config in checkpoint ({err})") from None
    found = config_error(cfg)
    if found is not None:
        key, reason = found
        raise CheckpointError(path, f"bad config in checkpoint ({key}: {reason})")
    return cfg


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", check=None):
    """Rebuild the model of a checkpoint in eval mode. Returns ``(model, config, state)``.

    ``path`` may be a run folder: its ``best.pt``, else (quietly: :func:`no_best_note` says so)
    its ``last.pt``.

    ``check(config)``, when given, runs before the model is built: flags checked against the
    checkpoint's settings fail before the weights are loaded and checked.
    """
    state = load_checkpoint(path)
    cfg = checkpoint_config(state)
    if check is not None:
        check(cfg)
    if "model" not in state:
        raise CheckpointError(state["path"], "no weights ('model') stored in checkpoint")
    model = build_checkpoint_model(cfg, state["path"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(
            state["path"], f"weights do not fit the model ({misfit_reason(err)})"
        ) from None
    # a diverged run's weights would give NaN scores, or metrics that merely look plausible
    if (name := nonfinite_tensor(model.state_dict())) is not None:
        raise CheckpointError(
            state["path"], f"weights are not finite ({name} holds NaN or inf): the run diverged"
        )
    return model.to(device).eval(), cfg, state


def build_checkpoint_model(cfg: Config, path: str | os.PathLike):
    """Build (untrained) the model of a checkpoint's config ``cfg`` (:func:`checkpoint_config`).

    Args:
        cfg: the checkpoint's config.
        path: the checkpoint file, named in the error.

    Raises:
        CheckpointError: the model cannot be built here, naming ``path``: a method neither
            registered nor installed in this process (a method registered by the script that
            trained it, a package not installed), with what to do, or any other refusal of
            :func:`avssl.models.build_model` (an installed method that cannot be imported).
    """
    from avssl.models import build_model

    try:
        return build_model(cfg.model, cfg.data, cfg.loss)
    except UnknownMethodError as err:
        raise unregistered_method(path, err) from None
    except ConfigError as err:
        raise CheckpointError(path, str(err)) from None


def check_checkpoint_method(cfg: Config, path: str | os.PathLike) -> None:
    """Refuse, naming the checkpoint ``path``, a config whose method this process cannot build
    (before anything else blames the weights or a ``--set``): one neither registered nor
    installed, with what to do, or an installed one that cannot be imported.

    Args:
        cfg: the checkpoint's own config (:func:`checkpoint_config`).
        path: the checkpoint file.
    """
    from avssl.models import METHODS, method_class
    from avssl.models.base import AVModel
    from avssl.models.plugins import unknown_method

    try:
        known = method_class(cfg.model.method) is not AVModel
    except ConfigError as err:
        raise CheckpointError(path, str(err)) from None
    if not known:
        raise unregistered_method(path, unknown_method(cfg.model.method, METHODS))


def unregistered_method(path: str | os.PathLike, err: UnknownMethodError) -> CheckpointError:
    """The error of a checkpoint at ``path`` whose method this process does not know: ``err``'s
    message, naming the file, and what to do."""
    return CheckpointError(
        path, f"{err}; register it (or install its package) before loading this checkpoint"
    )


def misfit_reason(err: RuntimeError, limit: int = 200) -> str:
    """One line of what ``load_state_dict``'s error says does not fit: the missing and the
    unexpected key names and the size mismatches (its header line, which names only the model
    class, left out), at most ``limit`` characters."""
    text = re.sub(
        r"copying a param with shape (torch\.Size\(\[[^]]*\]\)) from checkpoint, the shape in "
        r"current model is (torch\.Size\(\[[^]]*\]\))",
        r"\1 in the checkpoint, \2 in the model",
        str(err).strip(),
    )
    lines = [line.strip().rstrip(".").strip() for line in text.splitlines()]
    detail = "; ".join(line for line in lines[1:] if line) or (lines[0] if lines else "")
    detail = detail or type(err).__name__
    return detail if len(detail) <= limit else detail[: limit - 3] + "..."


def nonfinite_tensor(tensors) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` (a state dict) holding NaN or
    inf, or None; entries that are not tensors are passed over."""
    for name, t in tensors.items():
        if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all():
            return name
    return None


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
