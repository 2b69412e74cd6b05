"""Reading a file ``torch.save`` wrote, safely: what checkpoints and index tensors both need.

The file is loaded with ``weights_only=True``, so a pickle that would run code is refused,
and every way it can be unreadable is told apart, for the caller to put into its own message.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import warnings
import zipfile

import torch

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class TorchFileError(Exception):
    """Why a file cannot be loaded.

    Attributes:
        kind: ``"unreadable"`` (the system refused to read it), ``"empty"``, ``"not_torch"``
            (no PyTorch zip header), ``"unsafe"`` (objects other than tensors and plain values:
            loading could run code) or ``"damaged"`` (torch could not load it: truncated,
            corrupt).
        detail: the system's reason (``"unreadable"``) or torch's first line (``"damaged"``,
            at most 100 characters); empty otherwise.
    """

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def load_torch_file(path: str | os.PathLike, map_location="cpu", mmap: bool = False):
    """The object ``torch.save`` wrote to ``path``, loaded with ``weights_only=True``.

    Args:
        path: the file.
        map_location: as ``torch.load``'s.
        mmap: memory-map the file instead of reading it whole.

    Raises:
        TorchFileError: the file cannot be read, is empty, is not a PyTorch file, holds
            objects that could run code, or is damaged; torch's warnings are silenced.
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(ZIP_MAGIC))
    except OSError as err:
        raise TorchFileError("unreadable", err.strerror or type(err).__name__) from None
    if not magic:
        raise TorchFileError("empty")
    if magic != ZIP_MAGIC:
        raise TorchFileError("not_torch")
    try:
        with warnings.catch_warnings():  # torch warns about pickle details before failing
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        # weights_only refuses a global, or an opcode it does not take (protocol 4's FRAME in a
        # pickle that would run code); a pickle that does not even parse is damage (a byte
        # flipped in data.pkl: "Unsupported operand 127")
        if "Unsupported global" in str(err) or _pickle_parses(path):
            raise TorchFileError("unsafe") from None
        raise TorchFileError("damaged", _unpickler_reason(err)) from None
    except Exception as err:  # torch.load raises many types on a damaged file; all mean the same
        raise TorchFileError("damaged", _first_line(err)) from None


def _pickle_parses(path: str | os.PathLike) -> bool:
    """Whether the archive's ``data.pkl`` is a well-formed pickle stream (read, never run)."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            for _ in pickletools.genops(zf.read(name)):
                pass
    except Exception:  # a damaged archive or stream fails in many ways; all mean "no"
        return False
    return True


def _unpickler_reason(err: Exception) -> str:
    """What weights_only's unpickler found (``Unsupported operand 127``), not torch's advice
    around it; the first line when it names nothing."""
    text = str(err).split("WeightsUnpickler error:", 1)
    reason = text[1].strip().splitlines()[0].strip() if len(text) == 2 and text[1].strip() else ""
    return reason[:100] if reason else _first_line(err)


def _first_line(err: Exception) -> str:
    """The first line of ``err``'s message (its type when empty), at most 100 characters."""
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else type(err).__name__
    return first if len(first) <= 100 else first[:100] + "..."
