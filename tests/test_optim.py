"""The optimiser's weight-decay groups (train.decay_all) against AdamW's decoupled update."""

import pytest
import torch
from torch import nn

from avssl.config import DataConfig, ModelConfig, TrainConfig
from avssl.models import build_model
from avssl.train.optim import build_optimizer, param_groups


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    net.register_parameter("scale", nn.Parameter(torch.tensor(0.5)))
    return net


@pytest.mark.parametrize(
    "kind,ref_kind", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)]
)
def test_decay_all_is_plain_torch_adamw_or_adam_over_every_parameter(kind, ref_kind):
    ours, ref = _net(), _net()
    opt = build_optimizer(ours, TrainConfig(optimizer=kind, lr=0.01, weight_decay=0.1))
    ref_opt = ref_kind(ref.parameters(), lr=0.01, weight_decay=0.1)
    assert len(opt.param_groups) == 1 and type(opt) is ref_kind
    assert opt.param_groups[0]["params"] == list(ours.parameters())
    for step in range(3):
        g = torch.Generator().manual_seed(step)
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref_opt.step()
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_without_decay_all_only_matrices_and_kernels_decay():
    net = _net()
    lr, wd = 0.01, 0.1
    before = [p.detach().clone() for p in net.parameters()]
    opt = build_optimizer(net, TrainConfig(lr=lr, weight_decay=wd, decay_all=False))
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # Adam's step is then 0: only the decay moves a weight
    opt.step()
    for p, p0 in zip(net.parameters(), before, strict=True):
        want = p0 * (1 - lr * wd) if p.ndim >= 2 else p0
        torch.testing.assert_close(p.detach(), want, rtol=0, atol=1e-7)
    moved = [p.ndim >= 2 for p in net.parameters()]
    assert any(moved) and not all(moved)


def test_groups_split_a_real_model_and_keep_its_temperature_undecayed():
    model = build_model(ModelConfig(method="contrastive", learn_temperature=True), DataConfig())
    decayed, kept = param_groups(model, 0.05, decay_all=False)
    assert decayed["weight_decay"] == 0.05 and kept["weight_decay"] == 0.0
    ids = {id(p) for p in model.parameters()}
    d, k = {id(p) for p in decayed["params"]}, {id(p) for p in kept["params"]}
    assert d | k == ids and not d & k
    assert id(model.log_temperature) in k
    for name, p in model.named_parameters():
        assert (id(p) in d) == (p.ndim >= 2), name
    assert param_groups(nn.Linear(2, 2, bias=False), 0.1, decay_all=False)[0]["weight_decay"] == 0.1
    assert len(param_groups(nn.Linear(2, 2, bias=False), 0.1, decay_all=False)) == 1


def test_the_paper_configs_decay_as_their_adam_did():
    # "Adam, lr 1e-4, weight decay 1e-5": as AdamW's decoupled decay that is a factor of
    # 1 - 1e-9 a step, 1.0 in float32; as Adam's L2 term a weight with no data gradient decays
    from avssl.config import load_config

    train = load_config("configs/l3-paper.yaml").train
    assert (train.optimizer, train.lr, train.weight_decay) == ("adam", 1e-4, 1e-5)
    for kind, moves in (("adam", True), ("adamw", False)):
        weight = nn.Parameter(torch.ones(1000))
        holder = nn.Module()
        holder.w = weight
        opt = build_optimizer(holder, TrainConfig(optimizer=kind, lr=1e-4, weight_decay=1e-5))
        for _ in range(100):
            weight.grad = torch.zeros_like(weight)
            opt.step()
        assert bool((weight < 1).all()) == moves, kind
