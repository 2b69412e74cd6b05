"""Transductive adaptation of the audio side's batch-norm statistics to the evaluated audio.

AdaBN (Li et al., https://arxiv.org/abs/1603.04779): a network trained on one domain is moved
to another by replacing the running mean and variance of its batch-norm layers with those of
the new domain's inputs; no weight changes and no label is read. Here the domain is the audio
being evaluated (for AV-Digits, a voice never heard in training): the batch norms of the audio
tower and of the audio head are re-estimated on that audio, while the vision side keeps the
statistics it was trained with. It reads the evaluated split's unlabelled audio as a whole, so
results with it are a *transductive* protocol, reported as such and never in place of the
inductive numbers.

Each layer's statistics accumulate over every forward pass inside :func:`audio_bn_adaptation`
(a cumulative average over all the audio, as BN's ``momentum=None``), and each layer already
normalises with its statistics so far, so the layers after it see adapted inputs: with all the
audio in one batch this is exactly a training-mode forward pass's batch statistics (biased
variance), and with several batches the first ones are normalised with partial estimates.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor, nn

from avssl.errors import AvsslError


def audio_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model.audio`` and, when the method has one, ``model.audio_head``
    (in forward order)."""
    parts = [model.audio] + ([model.audio_head] if hasattr(model, "audio_head") else [])
    norm = nn.modules.batchnorm._BatchNorm
    return [m for part in parts for m in part.modules() if isinstance(m, norm)]


@contextlib.contextmanager
def audio_bn_adaptation(model: nn.Module):
    """Inside the block, every audio forward pass (in eval mode, any entry point) adds its inputs
    to the audio batch norms' statistics; on exit they hold the statistics of all that audio.

    Yields:
        a dict whose ``"samples"`` counts the examples the first audio batch norm saw.

    Raises:
        AvsslError: the model's audio side has no batch norm, or no audio passed through it.
    """
    layers = audio_norm_layers(model)
    if not layers:
        raise AvsslError("--adapt-bn: this model's audio side has no batch norm to adapt")
    sums: dict[nn.Module, list] = {m: [0, 0.0, 0.0] for m in layers}
    seen = {"samples": 0}

    def accumulate(module, args):
        x = args[0].detach().to(torch.float64)
        dims = [0, *range(2, x.dim())]  # all but the channel axis
        acc = sums[module]
        acc[0] += x.numel() // x.shape[1]
        acc[1] = acc[1] + x.sum(dim=dims)
        acc[2] = acc[2] + (x * x).sum(dim=dims)
        mean = acc[1] / acc[0]
        var = (acc[2] / acc[0] - mean * mean).clamp_min(0.0)
        module.running_mean.copy_(mean.to(module.running_mean.dtype))
        module.running_var.copy_(var.to(module.running_var.dtype))
        if module is layers[0]:
            seen["samples"] += x.shape[0]

    handles = [m.register_forward_pre_hook(accumulate) for m in layers]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()
    if seen["samples"] == 0:
        raise AvsslError("--adapt-bn: no audio reached the model to adapt it on")


def centre_waves(store) -> Tensor:
    """The centre audio window of every clip of a clip store, float ``[N, n]`` (the sounds
    :func:`~avssl.eval.retrieval.centre_pairs` takes, without decoding any frame)."""
    return torch.stack([store.audio(i, d / 2) for i, d in enumerate(store.durations)])


def adapt_on_waves(
    model: nn.Module, waves: Tensor, device, precision: str = "fp32", batch_size: int = 64
) -> dict:
    """Re-estimate the audio batch norms on waveforms ``[N, n]`` (the sounds about to be
    evaluated); returns the result's JSON entry ``{"adapt_bn": {"clips": N, "layers": L}}``.

    Args:
        model: the model whose audio batch norms are adapted in place.
        waves: float ``[N, n]`` waveforms at the model's sample rate.
        device: where the forward passes run.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: waveforms per forward pass (the statistics accumulate over all batches).
    """
    from avssl.eval.embed import embed_audio

    with audio_bn_adaptation(model):
        embed_audio(model, waves, device, precision, batch_size)
    return {"adapt_bn": {"clips": int(waves.shape[0]), "layers": len(audio_norm_layers(model))}}


ADAPT_HELP = (
    "transductive: re-estimate the audio side's batch-norm statistics on the evaluated audio "
    "(unlabelled) before embedding it (AdaBN, https://arxiv.org/abs/1603.04779)"
)


def extract_adapted(items, extractor, args):
    """:func:`~avssl.eval.clip_features.extract` with the training rows embedded under the
    checkpoint's statistics and the test rows under statistics re-estimated on the test rows'
    own audio (``--adapt-bn``; each domain its own, as in AdaBN). Rows come back train first.

    Args:
        items: the clips (:class:`~avssl.eval.audio_sets.AudioItem`); those of group ``test``
            are adapted to, all others are embedded with the checkpoint's statistics.
        extractor: a :class:`~avssl.eval.clip_features.WindowEmbedder`; its model's audio batch
            norms are left adapted to the test rows.
        args: the parsed ``classify`` arguments (``strict``, ``no_progress``).

    Returns:
        ``(features, kept, skipped, timing, {"adapt_bn": ...})``, as ``extract`` plus the entry.
    """
    from avssl.eval.clip_features import extract  # imports the towers' sharing: lazily

    parts = [[i for i, it in enumerate(items) if it.group != "test"]]
    parts.append([i for i, it in enumerate(items) if it.group == "test"])

    def run_part(idx, before=None):
        return extract(
            [items[i].path for i in idx], extractor, args.strict, progress=not args.no_progress,
            windows=[(items[i].start, items[i].duration) for i in idx], before=before,
        )  # fmt: skip

    def adapt(waves):  # statistics only, on every test clip before any test feature
        # each window embedded alone: shared convolutions would normalise a clip's whole map
        # and each window's edges too, counting some columns twice
        shared = getattr(extractor, "shared", False)
        extractor.shared = False
        try:
            with audio_bn_adaptation(extractor.model):
                for lo in range(0, len(waves), 16):
                    extractor(waves[lo : lo + 16])
        finally:
            if shared:
                extractor.shared = True

    x_train, k_train, s_train, t_train = run_part(parts[0])
    x_test, k_test, s_test, t_test = run_part(parts[1], before=adapt)
    kept = [parts[0][k] for k in k_train] + [parts[1][k] for k in k_test]
    # the statistics pass raised if no test clip was readable, so x_test has rows
    x = np.concatenate([x_train, x_test]) if k_train else x_test
    timing = {k: t_train[k] + t_test[k] for k in ("seconds", "audio_seconds")}
    timing["clips_per_s"] = len(kept) / timing["seconds"] if timing["seconds"] > 0 else 0.0
    entry = {"clips": len(k_test), "layers": len(audio_norm_layers(extractor.model))}
    return x, kept, s_train + s_test, timing, {"adapt_bn": entry}
