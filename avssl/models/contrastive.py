"""Contrastive audio-visual correspondence: symmetric InfoNCE over the (gathered) batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avssl.config import DataConfig, LossConfig, ModelConfig
from avssl.config_checks import TEMPERATURE
from avssl.errors import ConfigError
from avssl.losses import false_negatives, info_nce
from avssl.models.adversary import DomainAdversary
from avssl.models.base import AVModel, full_precision, running_stats_frozen, time_shift_conflict
from avssl.models.distributed import any_rank, gather_features
from avssl.models.stats import threshold_stats
from avssl.models.towers import Projection, VGGTower, audio_tower, global_max_pool

TEMPERATURE_RANGE = (TEMPERATURE.low, TEMPERATURE.high)


class ContrastiveAV(AVModel):
    """In-batch InfoNCE with a frame scored by its best location, as in EZ-VSL
    (https://arxiv.org/abs/2203.09324; the symmetric batch loss of CLIP,
    https://arxiv.org/abs/2103.00020; AVID, https://arxiv.org/abs/2004.12943, contrasts against
    a memory bank instead).

    Where it differs from EZ-VSL: towers trained from scratch (EZ-VSL starts from ResNet-18
    with an ImageNet-trained vision side), two-layer projection heads (one linear layer there),
    a learnt temperature (fixed there), a soft maximum over locations in training, and the
    same-clip time-shifted negatives.

    Audio: tower, global max-pool, MLP projection, L2 normalise. Vision, when ``cfg.spatial``: the
    tower map is projected per location (1x1 convs) and L2-normalised, and a frame's similarity to
    a sound is the max over locations of the cosine similarity (a soft max in training, see
    :meth:`AVModel.pool_locations`); otherwise global max-pool then MLP projection. Logits are
    similarities over a temperature (learnt when ``cfg.learn_temperature``, kept in [0.01, 1]).
    The loss is symmetric InfoNCE over the batch gathered across ranks, optionally with each row's
    own time-shifted audio (``audio_hard``) as an extra negative and with same-label pairs masked.
    With ``loss.domain_adversary`` > 0 a domain classifier on the audio embedding is trained
    against it through a reversed gradient (:mod:`avssl.models.adversary`).
    """

    paper = "https://arxiv.org/abs/2203.09324"
    needs_calibration = True
    unit_audio = True
    reads_spatial = True
    batch_negatives = True
    supports_audio_views = True
    supports_domain_adversary = True

    @classmethod
    def hard_negative_setting(
        cls, model: ModelConfig, data: DataConfig, loss: LossConfig
    ) -> str | None:
        """``loss.hard_negatives`` (``data.hard_fraction`` is not read); the time shift is
        refused beside it in :meth:`__init__`."""
        return "loss.hard_negatives" if loss.hard_negatives else None

    def __init__(self, cfg: ModelConfig, data: DataConfig, loss: LossConfig | None = None):
        super().__init__(cfg, data, loss)
        if cfg.audio.time_shift > 0 and self.loss_cfg.hard_negatives:
            raise ConfigError(time_shift_conflict("loss.hard_negatives: true"))
        self.has_map = cfg.spatial
        self.vision = VGGTower(3, cfg.channels, cfg.conv1_stride, cfg.vision_pool_last)
        self.audio = audio_tower(cfg)
        d = cfg.embed_dim
        self.vision_head = Projection(
            self.vision.out_dim, cfg.head_hidden, d, cfg.spatial, cfg.head_bn
        )
        self.audio_head = Projection(self.audio.out_dim, cfg.head_hidden, d, bn=cfg.head_bn)
        self.domain_adversary = None
        if self.loss_cfg.domain_adversary > 0:
            n = len(self.loss_cfg.domains)
            if n < 2:
                raise ConfigError(
                    f"loss.domain_adversary needs at least two domains in loss.domains (got {n}): "
                    "the manifest's training rows need a 'domain' field"
                )
            self.domain_adversary = DomainAdversary(d, n, self.loss_cfg.domain_adversary)
        log_t = torch.tensor(math.log(cfg.temperature))
        if cfg.learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> Tensor:
        """0-d ``exp(log_temperature)``, clamped to :data:`TEMPERATURE_RANGE`."""
        return self.log_temperature.exp().clamp(*TEMPERATURE_RANGE)

    def _units(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> unit vectors per location ``[B, D, L]`` (L = 1 when not spatial)."""
        x = self.vision(self.frame_norm(frames))
        if self.cfg.spatial:
            return F.normalize(self.vision_head(x).float().flatten(2), dim=1)
        return F.normalize(self.vision_head(global_max_pool(x)).float(), dim=1).unsqueeze(2)

    def audio_embedding(self, pooled: Tensor) -> Tensor:
        """Pooled audio tower ``[B, C]`` -> unit-norm embedding ``[B, embed_dim]``."""
        return F.normalize(self.audio_head(pooled).float(), dim=1)

    def embed_visual(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> unit-norm embedding ``[B, embed_dim]`` (spatial: the normalised
        mean of the location embeddings; retrieval by :meth:`score` / :meth:`visual_map` is
        usually better)."""
        return F.normalize(self._units(frames).mean(dim=2), dim=1)

    def visual_map(self, frames: Tensor) -> Tensor | None:
        """``[B, 3, H, W]`` -> unit-norm location embeddings ``[B, D, h, w]``, or None."""
        if not self.cfg.spatial:
            return None
        x = self.vision_head(self.vision(self.frame_norm(frames)))
        return F.normalize(x.float(), dim=1)

    def heatmap(self, frames: Tensor, wave: Tensor) -> Tensor | None:
        """Cosine similarity of each location to the sound ``[B, h, w]`` (None if not spatial)."""
        vmap = self.visual_map(frames)
        if vmap is None:
            return None
        a = self.embed_audio(wave)
        with full_precision(a):
            return torch.einsum("bdhw,bd->bhw", vmap, a)

    def visual_codes(self, frames: Tensor) -> Tensor:
        """``[F, 3, H, W]`` -> unit vectors per location ``[F, D, L]``."""
        return self._units(frames)

    def audio_codes(self, wave: Tensor) -> Tensor:
        """``[A, N]`` -> unit-norm audio embeddings ``[A, D]``."""
        return self.embed_audio(wave)

    def pair_scores(self, visual: Tensor, audio: Tensor) -> Tensor:
        """``[B, D, L]``, ``[B, D]`` -> max over locations of the cosine ``[B]`` (in any mode)."""
        with full_precision(audio):
            return torch.einsum("bdl,bd->bl", visual, audio).amax(1)

    def cross_scores(self, visual: Tensor, audio: Tensor) -> Tensor:
        """``[F, D, L]``, ``[A, D]`` -> max over locations of the cosine ``[A, F]``."""
        with full_precision(audio):
            return torch.einsum("fdl,ad->afl", visual.float(), audio.float()).amax(2)

    def audio_keys(self) -> tuple[str, ...]:
        """``audio`` and ``audio_hard`` (the time-shifted negative)."""
        return ("audio", "audio_hard")  # the in-batch sounds are the easy negatives

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Symmetric InfoNCE of the B frames against the B sounds (gathered across ranks).

        With ``cfg.audio_views`` V > 1 each sound is augmented V times (batch augmentation,
        https://arxiv.org/abs/1901.09335): the loss is the mean of the V views' InfoNCE against
        the same frames, whose tower runs once.

        Args:
            batch: reads ``frames`` ``[B, 3, H, W]`` float in ``[0, 1]``, ``audio`` ``[B, N]``
                and, if present, ``audio_hard`` ``[B, N]`` with ``hard_valid`` ``[B]`` bool,
                ``label`` ``[B]`` long with ``frame_labels`` ``[B, C]`` bool, and ``domain``
                ``[B]`` long.

        Returns:
            ``(loss, stats)``: the scalar loss, and as detached 0-d tensors (of the first view)
            ``loss`` (the mean over views); ``acc``, the share of rows whose positive has the
            highest logit; ``acc_easy`` / ``acc_hard``, balanced accuracies at
            ``decision_threshold`` of the positives against in-batch rolled audio / time-shifted
            audio (``acc_hard`` only when some clip of the batch has a time-shifted window,
            ``hard_valid``); ``temperature``; with a domain adversary and a ``domain`` entry in
            the batch, ``domain_loss`` and ``domain_acc`` (its cross-entropy on every view is
            added to the loss).
        """
        frames, audio, hard = batch["frames"], batch["audio"], batch.get("audio_hard")
        b, use_hard = frames.shape[0], hard is not None and self.loss_cfg.hard_negatives
        views = self.cfg.audio_views
        units = self._units(frames)  # [B, D, L]
        a = self.embed_audio(torch.cat([audio] * views + ([hard] * views if use_hard else [])))
        a_views = list(a[: views * b].split(b))
        hard_views = list(a[views * b :].split(b)) if use_hard else [None] * views
        # only for the stats, and only when some clip has a time-shifted window (1-s clips in
        # 1-s windows have none: the pass would cost a sixth of the step for a copy of acc_easy)
        valid = batch.get("hard_valid")
        if hard is not None and not use_hard and (valid is None or any_rank(valid)):
            with torch.no_grad(), running_stats_frozen(self):
                hard_views[0] = self.embed_audio(hard)
        with full_precision(a):
            units_all = gather_features(units)
            outs = [
                self._logits(units, units_all, a_view, a_hard, use_hard)
                for a_view, a_hard in zip(a_views, hard_views, strict=True)
            ]
        logits, sim, sim_hard = outs[0]
        # rows whose clip has no time-shifted window carry another clip's sound as their "hard"
        # negative: left out of the loss's hard column and of acc_hard
        hard_ok = None if valid is None or hard is None else gather_features(valid.bool())
        mask = None
        if self.loss_cfg.mask_same_label and "label" in batch:
            same = false_negatives(
                gather_features(batch["label"]),
                None if "frame_labels" not in batch else gather_features(batch["frame_labels"]),
            )
            mask = F.pad(same, (0, logits.shape[1] - same.shape[1]), value=False)
        if use_hard and hard_ok is not None and not bool(hard_ok.all()):
            if mask is None:
                mask = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
            mask[:, -1] |= ~hard_ok
        losses = [info_nce(out[0], mask=mask) for out in outs]
        loss = losses[0] if views == 1 else torch.stack(losses).mean()
        with torch.no_grad():
            stats = self._stats(logits, mask, sim, sim_hard, hard_ok)
        stats["loss"] = loss.detach()
        if self.domain_adversary is not None and "domain" in batch:
            adv, adv_stats = self.domain_adversary(
                torch.cat(a_views), torch.cat([batch["domain"]] * views)
            )
            loss = loss + adv
            stats.update(adv_stats)
        return loss, stats

    def _logits(self, units, units_all, a, a_hard, use_hard: bool):
        """This rank's units ``[B, D, L]``, the gathered ones ``[B', D, L]`` and this rank's
        sounds ``[B, D]`` (and their shifted copies, or None) -> logits ``[B', B' (+1)]``,
        similarities ``[B', B', L]`` and each frame's score against its shifted sound
        ``[B', L]`` (None without them)."""
        sim_hard = None
        if a_hard is not None:  # [B, L]: each frame against its own time-shifted audio
            sim_hard = gather_features(torch.einsum("bdl,bd->bl", units, a_hard))
        sim = torch.einsum("bdl,cd->bcl", units_all, gather_features(a))  # [B', B', L]
        logits = self.pool_locations(sim)  # [B', B']
        if use_hard:
            logits = torch.cat([logits, self.pool_locations(sim_hard).unsqueeze(1)], dim=1)
        return logits / self.temperature, sim, sim_hard

    def _stats(self, logits, mask, sim, sim_hard, hard_ok=None) -> dict[str, Tensor]:
        n = logits.shape[0]
        if mask is not None:
            mask = mask.clone()
            mask.diagonal().fill_(False)  # as in info_nce: the positives are never masked
            logits = logits.masked_fill(mask, float("-inf"))
        top = logits.argmax(dim=1) == torch.arange(n, device=logits.device)
        s = sim.amax(dim=2)  # decision rule: hard max
        pos, easy = s.diagonal(), s.roll(-1, dims=1).diagonal()  # easy: row i vs audio i + 1
        if mask is not None:  # a pair the loss takes for a match (a shared label) is no negative
            easy = easy[~mask[:, :n].roll(-1, dims=1).diagonal()]
        neg, neg_hard = easy, torch.zeros_like(easy, dtype=torch.bool)
        kinds = (len(easy) > 0, False)  # known from the shapes: nothing read from the device
        if sim_hard is not None:
            shifted = sim_hard.amax(dim=1)
            if hard_ok is not None:
                shifted = shifted[hard_ok]
            neg = torch.cat([easy, shifted])
            neg_hard = torch.cat([neg_hard, torch.ones_like(shifted, dtype=torch.bool)])
            kinds = (kinds[0], len(shifted) > 0)
        stats = threshold_stats(pos, neg, neg_hard, self.decision_threshold, kinds)
        stats.pop("acc")
        stats["acc"] = top.float().mean()
        stats["temperature"] = self.temperature.detach()
        return stats

    def calibration_parameters(self) -> list[nn.Parameter]:
        """``log_temperature`` when it is learnt (``model.learn_temperature``), else none."""
        return [self.log_temperature] if self.cfg.learn_temperature else []
