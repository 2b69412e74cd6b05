"""The small interface every method implements, and the shared two-class pair training.

A batch (``dict`` of tensors on the model's device) holds ``frames`` ``[B, 3, H, W]`` float in
``[0, 1]``, ``audio`` ``[B, N]`` (same clip, same time), ``audio_neg`` ``[B, N]`` with ``neg_hard``
``[B]`` bool (True: same clip, time-shifted; False: another clip), ``audio_hard`` ``[B, N]`` (always
a hard negative) and ``label`` ``[B]`` long (-1 when unknown). Each method reads what it needs.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avssl.audio_tta import speed_views
from avssl.config import DataConfig, LossConfig, ModelConfig
from avssl.data.pairs import AUDIO_KEYS
from avssl.errors import ConfigError
from avssl.features import build_audio_frontend
from avssl.frame_norm import FrameNorm
from avssl.losses import lse_pool
from avssl.models.stats import threshold_stats
from avssl.models.traits import MethodTraits

L3_GRID = (4, 3)  # frequency x time cells of L3's audio features for sound classification


def time_shift_conflict(what: str) -> str:
    """The one-line refusal of ``model.audio.time_shift`` beside time-shifted negatives."""
    return (
        f"model.audio.time_shift > 0 with {what}: a random time shift of the positive's audio "
        "blurs what tells a time-shifted (hard) negative from it; turn one of them off"
    )


class AVModel(MethodTraits, nn.Module):
    """Base of every audio-visual correspondence model (the task of Look, Listen and Learn,
    https://arxiv.org/abs/1705.08168).

    Each model owns its audio front end and frame normalisation, so it takes raw media tensors:
    waveforms ``[B, N]`` float and frames ``[B, 3, H, W]`` float in ``[0, 1]``. What a method is
    and can do (its paper, map, embedding space, ...) it declares as class attributes of
    :class:`~avssl.models.traits.MethodTraits`.

    Attributes:
        decision_threshold: buffer; ``score >= decision_threshold`` means "match".
    """

    def __init__(self, cfg: ModelConfig, data: DataConfig, loss: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.loss_cfg = loss or LossConfig()
        hard = self.hard_negative_setting(cfg, data, self.loss_cfg)
        if cfg.audio.time_shift > 0 and hard == "data.hard_fraction":
            raise ConfigError(time_shift_conflict("data.hard_fraction > 0"))
        self.audio_frontend = build_audio_frontend(cfg.audio, data.sample_rate)
        self.frame_norm = FrameNorm()
        self.register_buffer("decision_threshold", torch.tensor(0.0))
        # speed factors of test-time augmentation (avssl.audio_tta); set by evaluation, not saved
        self.audio_tta: tuple[float, ...] = ()
        # what embed_audio returns: "embedding" (through the method's audio head), "tower" (the
        # pooled tower output) or "grid" (the tower map on L3's 4 x 3 grid), for linear probes;
        # set by evaluation, not saved
        self.audio_layer: str = "embedding"

    def embed_audio(self, wave: Tensor) -> Tensor:
        """Audio embedding: ``[B, N]`` waveform -> ``[B, D]`` (front end, ``self.audio`` tower,
        then :meth:`audio_output`, i.e. :meth:`audio_embedding` unless told otherwise).

        Outside training, with ``audio_tta`` speed factors set, the mean of the embeddings of the
        sound at each speed (renormalised when embeddings are unit vectors). With ``audio_layer``
        ``"tower"``, the pooled tower output ``[B, audio.out_dim]`` instead (see
        :meth:`audio_output`).
        """
        if self.training or not self.audio_tta:
            return self._audio_features(self._spectrogram(wave))
        emb = sum(  # one speed at a time: a batch S times larger runs slower per sound on CPU
            self._audio_features(self._spectrogram(speed_views(wave, (s,)))).float()
            for s in self.audio_tta
        ) / len(self.audio_tta)
        unit = self.unit_audio and self.audio_layer == "embedding"
        return F.normalize(emb, dim=1) if unit else emb

    def _audio_features(self, spec: Tensor) -> Tensor:
        """``[B, 1, F, T]`` spectrograms -> what :meth:`embed_audio` returns for ``audio_layer``:
        with ``"grid"`` the audio tower's last map max-pooled to 4 (frequency) x 3 (time) cells,
        flattened ``[B, 12 * C]``: the audio features of Look, Listen and Learn's sound
        classification (conv4_2 max-pooled to 4 x 3 x 512 = 6,144-d,
        https://arxiv.org/abs/1705.08168; the tower's last 2 x 2 pool leaves it unchanged when
        the map's sides are multiples of 8 and 6, as L3's 32 x 24 from 257 x 199)."""
        if self.audio_layer == "grid":
            return F.adaptive_max_pool2d(self.audio.tower(spec), L3_GRID).flatten(1)
        return self.audio_output(self.audio(spec))

    def audio_output(self, pooled: Tensor) -> Tensor:
        """``[B, audio.out_dim]`` -> :meth:`audio_embedding`, or ``pooled`` itself when
        ``audio_layer`` is ``"tower"`` (the representation before the projection head, which
        linear evaluation often reads: SimCLR, https://arxiv.org/abs/2002.05709, Sec. 4.2)."""
        return pooled if self.audio_layer == "tower" else self.audio_embedding(pooled)

    def audio_embedding(self, pooled: Tensor) -> Tensor:
        """The audio tower's pooled output ``[B, audio.out_dim]`` -> the embedding ``[B, D]``
        (the method's audio head; identity without one)."""
        return pooled

    def embed_visual(self, frames: Tensor) -> Tensor:
        """Visual embedding: ``[B, 3, H, W]`` in ``[0, 1]`` -> ``[B, D]``."""
        raise NotImplementedError

    def visual_map(self, frames: Tensor) -> Tensor | None:
        """Per-location visual embeddings ``[B, D, h, w]``, or None for methods without a map."""
        return None

    def score(self, frames: Tensor, wave: Tensor) -> Tensor:
        """Correspondence score ``[B]`` of each (frame, audio) pair; higher = more likely a match.

        Always the decision rule of evaluation (location max for MIL methods, in any mode):
        :meth:`pair_scores` of the two sides' codes.
        """
        return self.pair_scores(self.visual_codes(frames), self.audio_codes(wave))

    def heatmap(self, frames: Tensor, wave: Tensor) -> Tensor | None:
        """Localisation map ``[B, h, w]`` of where the sound is in each frame, or None."""
        return None

    def visual_codes(self, frames: Tensor) -> Tensor:
        """What :meth:`score` computes from ``[F, 3, H, W]`` frames alone, for
        :meth:`cross_scores` (computed once, then scored against many sounds)."""
        raise NotImplementedError

    def audio_codes(self, wave: Tensor) -> Tensor:
        """What :meth:`score` computes from ``[A, N]`` waveforms alone, for :meth:`cross_scores`."""
        raise NotImplementedError

    def pair_scores(self, visual: Tensor, audio: Tensor) -> Tensor:
        """:meth:`score` from codes: ``[B]``, frame i against sound i, from :meth:`visual_codes`
        and :meth:`audio_codes` of B each (a frame's codes can then serve several sounds)."""
        raise NotImplementedError

    def cross_scores(self, visual: Tensor, audio: Tensor) -> Tensor:
        """:meth:`score` of every sound against every frame: ``[A, F]``, from
        :meth:`visual_codes` of F frames and :meth:`audio_codes` of A sounds."""
        raise NotImplementedError

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Training objective on a batch; returns ``(scalar loss, stats)``, the stats as
        detached 0-d tensors, read by the loop only when it logs (:mod:`avssl.models.stats`)."""
        raise NotImplementedError

    def audio_keys(self) -> tuple[str, ...]:
        """The audio entries of a training batch that :meth:`loss` reads; the training data
        decodes only these (:func:`~avssl.data.pairs.pair_audio`)."""
        return AUDIO_KEYS

    def calibration_parameters(self) -> list[nn.Parameter]:
        """Output calibration scalars (scale, bias, temperature), for an optimiser that treats
        them apart; avssl's own does not: they train at the model's learning rate."""
        return []

    def pool_locations(self, x: Tensor) -> Tensor:
        """Pool scores ``[..., L]`` -> ``[...]``: ``cfg.mil_pool`` in training, max in eval."""
        if self.training and self.cfg.mil_pool == "lse":
            return lse_pool(x, self.cfg.lse_sharpness)
        return x.float().amax(dim=-1)

    def _spectrogram(self, wave: Tensor) -> Tensor:
        """``[B, N]`` waveform -> ``[B, 1, F, T]`` float32 features."""
        return self.audio_frontend(wave)


@contextlib.contextmanager
def running_stats_frozen(module: nn.Module):
    """Context in which ``module``'s batch norms still normalise by the batch (training mode)
    but leave their running statistics as they were: for passes made only to report a number."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.track_running_stats else None)
             for m in norms]  # fmt: skip
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def full_precision(x: Tensor):
    """Context turning autocast off on ``x``'s device: similarity heads and their calibration are
    cheap, and bf16 would round cosines by ~0.004 (0.06 in logits at temperature 0.07).

    Args:
        x: a tensor of any shape; only its device is read.
    """
    return torch.autocast(device_type=x.device.type, enabled=False)


class PairClassifier(AVModel):
    """Two-class correspondence training shared by L3-Net (https://arxiv.org/abs/1705.08168),
    AVE-Net and AVOL-Net (https://arxiv.org/abs/1712.06651).

    A batch gives B positive pairs ``(frames, audio)`` and B negative pairs ``(frames, audio_neg)``:
    the vision tower runs once on the B frames, the audio tower once on the 2B clips. Subclasses
    define how features meet (:meth:`_pair_output`), the loss on that output and its score.
    """

    def _encode_visual(self, frames: Tensor) -> Tensor:
        raise NotImplementedError

    def _encode_audio(self, wave: Tensor) -> Tensor:
        return self.embed_audio(wave)

    def _pair_output(self, v: Tensor, a: Tensor) -> Tensor:
        raise NotImplementedError

    def _pair_loss(self, out: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def _pair_score(self, out: Tensor) -> Tensor:
        raise NotImplementedError

    def visual_codes(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` frames -> ``[B, ...]`` the fusion's visual input."""
        return self._encode_visual(frames)

    def audio_codes(self, wave: Tensor) -> Tensor:
        """``[B, N]`` waveforms -> ``[B, D]`` the fusion's audio input (:meth:`embed_audio`)."""
        return self._encode_audio(wave)

    def pair_scores(self, visual: Tensor, audio: Tensor) -> Tensor:
        """Codes of B pairs -> ``[B]`` float match logits (L3, AVE-Net: match minus mismatch)."""
        return self._pair_score(self._pair_output(visual, audio)).float()

    def cross_scores(self, visual: Tensor, audio: Tensor) -> Tensor:
        """``[F, ...]`` visual and ``[S, D]`` audio codes -> ``[S, F]`` scores of every pair."""
        # the fusion sees one pair at a time: each sound is paired with all F frames in turn
        n = visual.shape[0]
        rows = [
            self._pair_score(self._pair_output(visual, a.unsqueeze(0).expand(n, *a.shape)))
            for a in audio
        ]
        return torch.stack(rows).float()

    def audio_keys(self) -> tuple[str, ...]:
        """``audio`` and ``audio_neg``: the positive and the sampled negative of each frame."""
        return ("audio", "audio_neg")

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Balanced two-class loss on B positive and B negative pairs.

        Args:
            batch: reads ``frames`` ``[B, 3, H, W]`` float in ``[0, 1]``, ``audio`` and
                ``audio_neg`` ``[B, N]`` and, if present, ``neg_hard`` ``[B]`` bool.

        Returns:
            ``(loss, stats)``: the scalar loss, and as detached 0-d tensors ``loss``, ``acc``
            (at ``decision_threshold``), ``acc_easy`` / ``acc_hard`` (see
            :func:`threshold_stats`).
        """
        frames, pos, neg = batch["frames"], batch["audio"], batch["audio_neg"]
        b = frames.shape[0]
        v = self._encode_visual(frames)
        a = self._encode_audio(torch.cat([pos, neg]))
        out = self._pair_output(torch.cat([v, v]), a)
        target = torch.cat([torch.ones(b), torch.zeros(b)]).to(device=a.device, dtype=torch.long)
        loss = self._pair_loss(out, target)
        with torch.no_grad():
            s = self._pair_score(out)
            stats = threshold_stats(s[:b], s[b:], batch.get("neg_hard"), self.decision_threshold)
        stats["loss"] = loss.detach()
        return loss, stats
