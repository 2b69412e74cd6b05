"""Transductive adaptation of the audio side's batch-norm statistics to the evaluated audio.

AdaBN (Li et al., https://arxiv.org/abs/1603.04779): a network trained on one domain is moved
to another by replacing the running mean and variance of its batch-norm layers with those of
the new domain's inputs; no weight changes and no label is read. Here the domain is the audio
being evaluated (for AV-Digits, a voice never heard in training): the batch norms of the audio
tower and of the audio head are re-estimated on that audio, while the vision side keeps the
statistics it was trained with. It reads the evaluated split's unlabelled audio as a whole, so
results with it are a *transductive* protocol, reported as such and never in place of the
inductive numbers.

The layers are estimated one at a time in forward order: all the audio passes through the model
(in batches) with the layers before already holding their final statistics, the inputs reaching
the current layer are summed exactly, and the pass stops there. Each layer thus gets the mean
and (biased) variance of all the audio normalised by the final statistics of the layers before
it, which is what a training-mode pass over all the audio in one batch normalises with, whatever
the batch size and order. It costs one partial pass over the audio per layer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from avssl.audio_tta import speed_views
from avssl.errors import AvsslError
from avssl.eval.embed import audio_windows
from avssl.train.runtime import autocast


class _Reached(Exception):
    """Raised by the hook of the layer being estimated: the rest of the pass is not needed.
    (Not a RuntimeError, which some callers catch around forward passes.)"""


def audio_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model.audio`` and, when the method has one, ``model.audio_head``
    (in forward order)."""
    parts = [model.audio] + ([model.audio_head] if hasattr(model, "audio_head") else [])
    norm = nn.modules.batchnorm._BatchNorm
    return [m for part in parts for m in part.modules() if isinstance(m, norm)]


def _estimate_layer(model, layer, waves: Tensor, device, precision: str, batch_size: int) -> bool:
    """Set ``layer``'s running statistics to those of its inputs over all of ``waves`` (the
    layers before it as they stand); False if no pass reached it (left unchanged)."""
    shift = layer.running_mean.detach().to(torch.float64)  # sums about it: no cancellation
    acc = {"n": 0, "s1": 0.0, "s2": 0.0}

    def record(module, args):
        x = args[0].detach().to(torch.float64)
        x = x - shift.to(x.device).view(-1, *([1] * (x.dim() - 2)))
        dims = [0, *range(2, x.dim())]  # all but the channel axis
        acc["n"] += x.numel() // x.shape[1]
        acc["s1"] = acc["s1"] + x.sum(dim=dims).cpu()
        acc["s2"] = acc["s2"] + (x * x).sum(dim=dims).cpu()
        raise _Reached

    # with test-time augmentation every speed view reaches the layer (evaluation embeds them
    # all): the views of each batch go through as one batch, the model's own TTA loop (which
    # the hook would stop after its first speed) off
    tta, model.audio_tta = model.audio_tta, ()
    handle = layer.register_forward_pre_hook(record)
    try:
        with torch.no_grad():
            for lo in range(0, waves.shape[0], batch_size):
                batch = waves[lo : lo + batch_size].to(device)
                try:
                    with autocast(precision, torch.device(device)):
                        model.embed_audio(speed_views(batch, tta) if tta else batch)
                except _Reached:
                    pass
    finally:
        handle.remove()
        model.audio_tta = tta
    if acc["n"] == 0:
        return False
    centred = acc["s1"] / acc["n"]
    var = (acc["s2"] / acc["n"] - centred * centred).clamp_min(0.0)
    layer.running_mean.copy_((centred + shift.cpu()).to(layer.running_mean))
    layer.running_var.copy_(var.to(layer.running_var))
    return True


def centre_waves(store) -> Tensor:
    """The centre audio window of every clip of a clip store, float ``[N, n]`` (the sounds
    :func:`~avssl.eval.retrieval.centre_pairs` takes, without decoding any frame)."""
    return torch.stack([store.audio(i, d / 2) for i, d in enumerate(store.durations)])


def adapt_on_waves(
    model: nn.Module, waves: Tensor, device, precision: str = "fp32", batch_size: int = 64
) -> dict:
    """Re-estimate the audio batch norms on waveforms ``[N, n]`` (the sounds about to be
    evaluated), layer by layer (module docstring); returns the result's JSON entry
    ``{"adapt_bn": {"clips": N, "layers": L}}`` (L: the layers the audio reached).

    Args:
        model: the model whose audio batch norms are adapted in place (left in eval mode).
        waves: float ``[N, n]`` waveforms at the model's sample rate.
        device: where the forward passes run.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: waveforms per forward pass (memory only: the statistics do not depend on it).

    Raises:
        AvsslError: the model's audio side has no batch norm, or ``waves`` is empty.
    """
    layers = audio_norm_layers(model)
    if not layers:
        raise AvsslError("--adapt-bn: this model's audio side has no batch norm to adapt")
    if waves.shape[0] == 0:
        raise AvsslError("--adapt-bn: no audio reached the model to adapt it on")
    model.eval()
    reached = [_estimate_layer(model, m, waves, device, precision, batch_size) for m in layers]
    return {"adapt_bn": {"clips": int(waves.shape[0]), "layers": sum(reached)}}


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

    adapted = {}

    def adapt(waves):  # statistics only, on every test clip before any test feature
        # each window as embedded alone: shared convolutions would normalise a clip's whole map
        # and each window's edges too, counting some columns twice
        if not waves:
            raise AvsslError("--adapt-bn: no readable test clip to adapt the model on")
        e = extractor
        wins = torch.cat([audio_windows(w, e.sample_rate, e.window, e.hop) for w in waves])
        adapted.update(adapt_on_waves(e.model, wins, e.device, e.precision, e.batch_size))

    x_train, k_train, s_train, t_train = run_part(parts[0])
    x_test, k_test, s_test, t_test = run_part(parts[1], before=adapt)
    kept = [parts[0][k] for k in k_train] + [parts[1][k] for k in k_test]
    # the statistics pass raised if no test clip was readable, so x_test has rows
    x = np.concatenate([x_train, x_test]) if k_train else x_test
    timing = {k: t_train[k] + t_test[k] for k in ("seconds", "audio_seconds")}
    timing["clips_per_s"] = len(kept) / timing["seconds"] if timing["seconds"] > 0 else 0.0
    entry = {"clips": len(k_test), "layers": adapted["adapt_bn"]["layers"]}
    return x, kept, s_train + s_test, timing, {"adapt_bn": entry}
