"""The global random number generators of a training run, rank by rank.

The model draws its training-time augmentation (SpecAugment masks, speed, time shift, noise)
from torch's global generators. Every rank is seeded alike with ``train.seed``, so the weights
start identical on every rank; once the model is built, :func:`seed_rank` gives each rank but
rank 0 generators of its own, so the ranks draw different augmentations. Rank 0 goes on with
the seed's stream: a run in one process draws, and trains, as it did before draws were per
rank. A checkpoint holds every rank's states (:func:`gather_states`, called by every rank), and
a resumed rank ``r`` takes state ``r`` back (:func:`restore_rng`).
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist

from avssl.train.runtime import seed_everything

RANKS_KEY = "rng_ranks"  # a checkpoint's generator states, one entry per rank


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of rank ``rank``'s generators in a run of ``train.seed`` ``seed``.

    Drawn from a hash, so it is unlike the seed of any other rank or run (``seed + rank`` would
    be rank 0's seed of the run with seed ``seed + rank``). A resumed rank whose state the
    checkpoint lacks passes its ``step``.

    Returns:
        A seed in ``[0, 2**63)``.
    """
    text = f"avssl-rank-draws:{seed}:{rank}:{step}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def seed_rank(seed: int, rank: int) -> None:
    """Give rank ``rank`` (from 1) global generators of its own, seeded by :func:`rank_seed`.

    Call it on every rank once the model is built (its initialisation must draw alike on every
    rank) and before the first training draw. Rank 0's generators are left as they are.

    Args:
        seed: ``train.seed``.
        rank: this process's rank.
    """
    if rank > 0:
        seed_everything(rank_seed(seed, rank))


def rng_states() -> dict:
    """This process's global generator states as a checkpoint's top-level entries: the CPU's,
    and where CUDA is available every device's (``rng_cuda``) with ``rng_cuda_device``, the
    index of the one this process trains on. Earlier versions restore only these."""
    states = {"rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["rng_cuda"] = torch.cuda.get_rng_state_all()
        states["rng_cuda_device"] = torch.cuda.current_device()
    return states


def _own_states() -> dict:
    """This rank's entry of :data:`RANKS_KEY`: the CPU generator's state and, where CUDA is
    available, that of the device this process trains on (the current one)."""
    states = {"rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["rng_cuda"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return states


def gather_states() -> dict:
    """The generator entries of a checkpoint: :func:`rng_states` of this process and
    :data:`RANKS_KEY`, every rank's states in rank order.

    Collective under DDP (``all_gather_object``): every rank must call it at the same point,
    although rank 0 alone writes the checkpoint. Outside a process group, this process's.
    """
    own = _own_states()
    ranks = [own]
    if dist.is_initialized():
        ranks = [None] * dist.get_world_size()
        dist.all_gather_object(ranks, own)
    return {**rng_states(), RANKS_KEY: ranks}


def _a(value) -> str:
    """``a str``, ``an int``, ``a float tensor``: what a value is, for a message."""
    name = type(value).__name__
    if isinstance(value, torch.Tensor):
        name = f"{str(value.dtype).removeprefix('torch.')} tensor"
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _bytes(value) -> bool:
    """Whether ``value`` is a byte tensor, as a generator's state is."""
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8


def _cpu_state_error(value) -> str | None:
    """Why ``value`` is not a CPU generator's state (None: it is one)."""
    if not isinstance(value, torch.Tensor):
        return f"{_a(value)}, not a generator state"
    try:
        torch.Generator().set_state(value)
    except (RuntimeError, TypeError):
        return f"not a CPU generator state: {value.numel()} bytes"
    return None


def states_error(state: dict) -> str | None:
    """What is wrong with a checkpoint's generator states, or None: checked when it is read for
    a resume, as restoring them at the first batch would fail with torch's traceback (or, for a
    mistyped :data:`RANKS_KEY`, restore rank 0's states on every rank without a word).

    ``rng_cpu`` must be a CPU generator's state, ``rng_cuda`` (where present) a list of byte
    tensors, and :data:`RANKS_KEY` (absent in checkpoints of earlier versions) a non-empty list
    of mappings, each with an ``rng_cpu`` of its own and, where present, an ``rng_cuda`` byte
    tensor.
    """
    if (problem := _cpu_state_error(state.get("rng_cpu"))) is not None:
        return f"bad rng_cpu in checkpoint ({problem})"
    cuda = state.get("rng_cuda")
    if cuda is not None and not (isinstance(cuda, list) and all(map(_bytes, cuda))):
        return f"bad rng_cuda in checkpoint ({_a(cuda)}, not a list of byte tensors)"
    if RANKS_KEY not in state:
        return None
    ranks = state[RANKS_KEY]
    if not isinstance(ranks, list) or not ranks:
        what = "an empty list" if isinstance(ranks, list) else _a(ranks)
        return f"bad {RANKS_KEY} in checkpoint ({what}, not a list of every rank's states)"
    for rank, entry in enumerate(ranks):
        if not isinstance(entry, dict):
            problem = f"{_a(entry)}, not a mapping"
        elif "rng_cpu" not in entry:
            problem = "no rng_cpu"
        elif (cpu := _cpu_state_error(entry["rng_cpu"])) is not None:
            problem = f"rng_cpu: {cpu}"
        elif entry.get("rng_cuda") is not None and not _bytes(entry["rng_cuda"]):
            problem = f"rng_cuda: {_a(entry['rng_cuda'])}, not a byte tensor"
        else:
            continue
        return f"bad {RANKS_KEY} in checkpoint (rank {rank}: {problem})"
    return None


def _saved_ranks(resume: dict) -> list | None:
    """The per-rank states of a checkpoint, or None for one of an earlier version."""
    ranks = resume.get(RANKS_KEY)
    return ranks if isinstance(ranks, list) and ranks else None


def _restore_shared(resume: dict) -> None:
    """Restore a checkpoint without per-rank states (earlier versions), on every rank alike.

    The generator of the device this process trains on (the current one) takes the state of the
    device the checkpoint's process trained on. Those versions seeded every rank alike, and rank
    0 alone wrote checkpoints, so rank 0's state was every rank's; under torchrun rank ``r``
    trains on ``cuda:r``, and restoring device by device would give it the state of a generator
    rank 0 never drew from. A checkpoint without ``rng_cuda_device`` (older still) is restored
    device by device, as it was.
    """
    torch.set_rng_state(resume["rng_cpu"])
    cuda = resume.get("rng_cuda")
    if not cuda or not torch.cuda.is_available():
        return
    saved = resume.get("rng_cuda_device")
    if isinstance(saved, int) and 0 <= saved < len(cuda):
        torch.cuda.set_rng_state(cuda[saved], torch.cuda.current_device())
    else:
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def restore_rng(resume: dict, rank: int = 0, seed: int = 0) -> None:
    """Set this rank's global generators to the states ``resume`` saved for them.

    Rank ``r`` takes entry ``r`` of :data:`RANKS_KEY` (its CUDA state, where both runs have
    CUDA, goes to the device it trains on). A rank the checkpoint has no entry for (a resume
    with more processes) is seeded afresh from ``seed``, its rank and the checkpoint's step
    (:func:`world_note` says so). A checkpoint of an earlier version holds rank 0's states
    alone, which every rank takes, as those versions did: their draws go on repeating across
    ranks.

    Args:
        resume: the loaded checkpoint.
        rank: this process's rank.
        seed: ``train.seed``.
    """
    ranks = _saved_ranks(resume)
    if ranks is None:
        _restore_shared(resume)
    elif rank >= len(ranks):
        seed_everything(rank_seed(seed, rank, resume["step"]))
    else:
        torch.set_rng_state(ranks[rank]["rng_cpu"])
        cuda = ranks[rank].get("rng_cuda")
        if cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda, torch.cuda.current_device())


def world_note(resume: dict, world: int) -> str | None:
    """The note rank 0 prints when ``resume`` holds the generator states of another number of
    processes than ``world`` (None otherwise, and for a checkpoint of an earlier version)."""
    ranks = _saved_ranks(resume)
    if ranks is None or len(ranks) == world:
        return None
    saved = len(ranks)
    if saved < world:
        change = f"ranks {saved} and up draw from new seeds (of train.seed, rank and step "
        change += f"{resume['step']})"
    else:
        change = f"the states of ranks {world} and up are left unused"
    processes = f"{saved} process" + ("es" if saved > 1 else "")
    return (
        f"note: resume: the checkpoint holds the random generator states of {processes} and "
        f"this run has {world}: {change}, so its augmentation draws will not repeat those of "
        f"the run continued with {processes}"
    )
