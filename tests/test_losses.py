"""Losses: brute-force references, descent on a fixed batch, and the DDP feature gather."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from avssl.config import AudioFeatures, DataConfig, LossConfig, ModelConfig
from avssl.errors import ConfigError
from avssl.losses import (
    false_negatives,
    info_nce,
    lse_pool,
    mil_logistic,
    pair_cross_entropy,
    pair_logistic,
)
from avssl.models import METHODS, build_model
from avssl.models.distributed import gather_features


def brute_info_nce(logits, mask):
    """Mean over rows and over the first B columns of per-item cross-entropies, loop by loop."""
    n = logits.shape[0]
    row_terms, col_terms = [], []
    for i in range(n):
        keep = [j for j in range(logits.shape[1]) if j == i or not mask[i, j]]
        target = torch.tensor([keep.index(i)])
        row_terms.append(F.cross_entropy(logits[i, keep][None], target))
    for j in range(n):
        keep = [i for i in range(n) if i == j or not mask[i, j]]
        target = torch.tensor([keep.index(j)])
        col_terms.append(F.cross_entropy(logits[keep, j][None], target))
    return 0.5 * (torch.stack(row_terms).mean() + torch.stack(col_terms).mean())


@pytest.mark.parametrize("extra", [0, 1, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_info_nce_matches_per_row_cross_entropy(extra, masked):
    g = torch.Generator().manual_seed(extra)
    logits = torch.randn(6, 6 + extra, generator=g) * 3
    mask = torch.rand(6, 6 + extra, generator=g) < (0.4 if masked else 0.0)
    mask[0, 0] = True  # a positive asked to be masked stays in
    got = info_nce(logits, mask=mask if masked else None)
    assert torch.allclose(got, brute_info_nce(logits, mask), atol=1e-6)


def test_info_nce_targets_are_a_permutation():
    logits = torch.randn(5, 5)
    perm = torch.tensor([2, 0, 4, 1, 3])
    assert torch.allclose(info_nce(logits[:, perm], targets=torch.argsort(perm)), info_nce(logits))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=12),
    st.floats(0.5, 50.0),
)
def test_lse_pool_matches_its_formula(values, k):
    x = torch.tensor([values], dtype=torch.float64)
    expected = math.log(sum(math.exp(k * v) for v in values) / len(values)) / k
    got = float(lse_pool(x.float(), k))
    assert got == pytest.approx(expected, abs=1e-4)
    assert max(values) - math.log(len(values)) / k - 1e-4 <= got <= max(values) + 1e-4


def test_pair_losses_match_their_formulas():
    logits, target = torch.randn(7, 2), torch.randint(0, 2, (7,))
    p = torch.softmax(logits, 1)[torch.arange(7), target]
    assert torch.allclose(pair_cross_entropy(logits, target), -p.log().mean())
    z, y = torch.randn(7), torch.randint(0, 2, (7,)).float()
    manual = -(y * torch.sigmoid(z).log() + (1 - y) * torch.sigmoid(-z).log()).mean()
    assert torch.allclose(mil_logistic(z, y), manual, atol=1e-6)


def tiny(method: str, **loss_kw):
    mapped = method in ("avolnet", "contrastive")
    cfg = ModelConfig(
        method=method, channels=[4, 8], embed_dim=16, head_hidden=16, fusion_hidden=16,
        conv1_stride=1 if method == "l3" else 2, vision_pool_last=not mapped,
        audio=AudioFeatures(kind="logmel", n_fft=256, win_length=200, hop_length=80, n_mels=16),
    )  # fmt: skip
    torch.manual_seed(0)
    return build_model(cfg, DataConfig(sample_rate=8000), LossConfig(**loss_kw))


def tiny_batch(b: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "frames": torch.rand(b, 3, 16, 16, generator=g),
        "audio": 0.1 * torch.randn(b, 2000, generator=g),
        "audio_neg": 0.1 * torch.randn(b, 2000, generator=g),
        "neg_hard": torch.arange(b) % 2 == 0,
        "audio_hard": 0.1 * torch.randn(b, 2000, generator=g),
        "label": torch.arange(b) % 3 - 1,
    }


@pytest.mark.parametrize(
    "method,loss_kw",
    [(m, {}) for m in METHODS]
    + [("contrastive", {"mask_same_label": True})]
    + [("avolnet", {"pair_negatives": "batch", "mask_same_label": True})],
)
def test_each_loss_goes_down_on_a_fixed_batch(method, loss_kw):
    model, batch = tiny(method, **loss_kw), tiny_batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


class _Recorded(dict):
    """A batch that records which keys a loss reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


@pytest.mark.parametrize(
    "method,loss_kw",
    [(m, {}) for m in METHODS]
    + [("contrastive", {"hard_negatives": True})]
    + [("avolnet", {"pair_negatives": "batch"})],
)
def test_each_loss_reads_only_the_audio_keys_its_model_declares(method, loss_kw):
    model, batch = tiny(method, **loss_kw), tiny_batch()
    batch["audio_easy"] = torch.where(batch["neg_hard"][:, None], 0.5, batch["audio_neg"])
    batch["hard_valid"] = torch.ones(len(batch["audio"]), dtype=torch.bool)
    keys = model.audio_keys()
    audio = {"audio", "audio_easy", "audio_hard", "audio_neg"}
    full, only = _Recorded(batch), {k: v for k, v in batch.items() if k not in audio - set(keys)}
    torch.manual_seed(1)
    want, _ = model.loss(full)
    torch.manual_seed(1)
    got, _ = model.loss(only)  # the training data leaves the other audio entries out
    assert full.read & audio <= set(keys) and "audio" in keys
    assert torch.equal(got, want)


@pytest.mark.parametrize("hard_negatives", [True, False])
def test_contrastive_loss_is_info_nce_of_its_own_scores(hard_negatives):
    model = tiny("contrastive", hard_negatives=hard_negatives, mask_same_label=True).eval()
    batch = dict(tiny_batch(6), label=torch.tensor([0, 0, 1, 2, 2, -1]))  # neighbours share
    with torch.no_grad():
        loss, stats = model.loss(batch)
        frames = batch["frames"]
        sim = torch.stack([model.score(frames, a.expand(6, -1)) for a in batch["audio"]], 1)
        hard = model.score(frames, batch["audio_hard"])
        logits = torch.cat([sim, hard[:, None]], 1) if hard_negatives else sim
        logits = logits / model.temperature
    lab = batch["label"]
    same = (lab[:, None] == lab[None]) & (lab[:, None] >= 0)
    mask = F.pad(same, (0, int(hard_negatives)))
    assert float(loss) == pytest.approx(float(brute_info_nce(logits, mask)), rel=1e-4)
    mask[torch.arange(6), torch.arange(6)] = False  # a positive is never masked
    top = logits.masked_fill(mask, -math.inf).argmax(1) == torch.arange(6)
    assert stats["acc"] == pytest.approx(float(top.float().mean()))
    pos, easy = sim.diagonal(), sim.roll(-1, 1).diagonal()
    easy = easy[~same.roll(-1, 1).diagonal()]  # a pair of one label is a match, no negative
    assert 0 < len(easy) < 6  # the batch has both kinds
    tpr = (pos >= 0).float().mean()
    assert stats["acc_easy"] == pytest.approx(float(0.5 * (tpr + (easy < 0).float().mean())))
    assert stats["acc_hard"] == pytest.approx(float(0.5 * (tpr + (hard < 0).float().mean())))


def test_contrastive_skips_the_stats_pass_without_shifted_windows():
    """1-s clips in 1-s windows have no time-shifted window (hard_valid all False): no acc_hard,
    and the audio tower runs once per view instead of once more for that stat."""
    model = tiny("contrastive", hard_negatives=False).eval()
    calls = []
    model.audio.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    batch = tiny_batch(6)
    with torch.no_grad():
        _, stats = model.loss(dict(batch, hard_valid=torch.zeros(6, dtype=torch.bool)))
        assert "acc_hard" not in stats and "acc_easy" in stats and calls == [6]
        _, stats = model.loss(dict(batch, hard_valid=torch.arange(6) == 2))
    assert "acc_hard" in stats and calls == [6, 6, 6]


@pytest.mark.parametrize("density", [0.0, 0.5, 1.0])
def test_pair_logistic_matches_a_loop(density):
    """Half the mean loss of the diagonal pairs (label 1), half that of the counted off-diagonal
    pairs (label 0); the positive term alone when no pair counts as a negative."""
    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(5, 5, generator=g)
    negatives = torch.rand(5, 5, generator=g) < density
    pos = [F.binary_cross_entropy_with_logits(logits[i, i], torch.tensor(1.0)) for i in range(5)]
    neg = [
        F.binary_cross_entropy_with_logits(logits[i, j], torch.tensor(0.0))
        for i in range(5)
        for j in range(5)
        if i != j and negatives[i, j]
    ]
    expected = torch.stack(pos).mean()
    if neg:
        expected = 0.5 * (expected + torch.stack(neg).mean())
    assert float(pair_logistic(logits, negatives)) == pytest.approx(float(expected), rel=1e-5)
    # one graph under torch.compile (no data-dependent branch or shape); eager backend: fast
    compiled = torch.compile(pair_logistic, fullgraph=True, backend="eager")
    assert float(compiled(logits, negatives)) == pytest.approx(float(expected), rel=1e-5)


def test_avolnet_batch_pairs_loss_is_pair_logistic_of_its_own_scores():
    """Every frame against every sound, scored as evaluation scores them (eval mode pools with the
    hard max); a frame that shows a sound's digit is no negative; audio_neg is never read."""
    model = tiny("avolnet", pair_negatives="batch", mask_same_label=True).eval()
    batch = tiny_batch(6)
    batch["frame_labels"] = torch.rand(6, 3, generator=torch.Generator().manual_seed(2)) < 0.4
    batch["audio_neg"] = torch.full_like(batch["audio_neg"], float("nan"))
    with torch.no_grad():
        loss, stats = model.loss(batch)
        frames = batch["frames"]
        s = torch.stack([model.score(frames, a.expand(6, -1)) for a in batch["audio"]], 1)
    lab = batch["label"]
    negatives = torch.tensor(
        [[i != j and not (lab[j] >= 0 and batch["frame_labels"][i, lab[j]]) for j in range(6)]
         for i in range(6)]
    )  # fmt: skip
    assert float(loss) == pytest.approx(float(pair_logistic(s, negatives)), rel=1e-4)
    tpr = (s.diagonal() >= 0).float().mean()
    tnr = (s[negatives] < 0).float().mean()
    assert stats["acc_easy"] == pytest.approx(float(0.5 * (tpr + tnr)))


def test_batch_pairs_are_for_avolnet_only():
    for method, pairs in (("contrastive", "batch"), ("avenet", "batch"), ("avolnet", "nope")):
        with pytest.raises(ConfigError, match="loss.pair_negatives"):
            tiny(method, pair_negatives=pairs)


def test_false_negatives_against_brute_force():
    """Frame i is no negative for sound c when it shows c's class (frame_labels or same label)."""
    g = torch.Generator().manual_seed(0)
    label = torch.randint(-1, 5, (9,), generator=g)
    shows = torch.rand(9, 5, generator=g) < 0.4
    got, same = false_negatives(label, shows), false_negatives(label)
    for i in range(9):
        for c in range(9):
            known = int(label[c]) >= 0
            assert bool(got[i, c]) == (known and bool(shows[i, int(label[c])]))
            assert bool(same[i, c]) == (known and int(label[i]) == int(label[c]))


def test_gather_features_is_identity_without_a_process_group():
    assert not dist.is_initialized()
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_features(x) is x


def _two_rank_worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)  # same weights and data on both ranks; each takes its half
    w = torch.randn(5, 4, requires_grad=True)
    log_t = torch.zeros((), requires_grad=True)
    xv, xa = torch.randn(6, 5), torch.randn(6, 5)
    v = gather_features(F.normalize(xv[rank * 3 : rank * 3 + 3] @ w, dim=1))
    a = gather_features(F.normalize(xa[rank * 3 : rank * 3 + 3] @ w, dim=1))
    info_nce(v @ a.T / log_t.exp()).backward()
    for p in (w, log_t):  # what DDP does to parameter gradients
        dist.all_reduce(p.grad)
        p.grad /= 2
    if rank == 0:
        torch.save({"w": w.grad, "t": log_t.grad}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_gather_features_gives_the_full_batch_gradient_over_two_ranks(tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = str(tmp_path / "grads.pt")
    mp.spawn(_two_rank_worker, args=(str(tmp_path / "init"), out), nprocs=2)
    torch.manual_seed(0)
    w = torch.randn(5, 4, requires_grad=True)
    log_t = torch.zeros((), requires_grad=True)
    xv, xa = torch.randn(6, 5), torch.randn(6, 5)
    info_nce(F.normalize(xv @ w, dim=1) @ F.normalize(xa @ w, dim=1).T / log_t.exp()).backward()
    got = torch.load(out)
    assert torch.allclose(got["w"], w.grad, atol=1e-6)
    assert torch.allclose(got["t"], log_t.grad, atol=1e-6)
