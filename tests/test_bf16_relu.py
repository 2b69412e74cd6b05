"""The bf16 ReLU through integer patterns against a brute-force reference, value by value."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avssl.models.bf16_relu import ReLU, relu_
from avssl.models.towers import VGGTower

SPECIALS = [0.0, 1e-38, -1e-38, 3.0e38, -3.0e38, float("inf"), float("-inf"), 1.0, -1.0]


def _reference(x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU and its gradient element by element in fp32, the definition written out."""
    xs, gs = x.float().flatten().tolist(), grad.float().flatten().tolist()
    out = [v if v > 0 else 0.0 for v in xs]
    back = [g if v > 0 else 0.0 for v, g in zip(xs, gs, strict=True)]
    shape = x.shape
    return torch.tensor(out).reshape(shape), torch.tensor(back).reshape(shape)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_relu_matches_the_definition_forward_and_backward(channels_last):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 4, 5, 6, generator=g) * 10
    base.view(-1)[: len(SPECIALS)] = torch.tensor(SPECIALS)
    if channels_last:
        base = base.contiguous(memory_format=torch.channels_last)
    x = base.bfloat16().requires_grad_()
    grad = torch.randn(base.shape, generator=g).bfloat16()
    y = relu_(x * 1)  # in place on a non-leaf, as after a batch norm
    y.backward(grad)
    want_y, want_grad = _reference(x.detach(), grad)
    assert y.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    assert torch.equal(y.float(), want_y) and torch.equal(x.grad.float(), want_grad)
    assert not torch.signbit(y).any()  # -0.0 comes out as +0.0
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_bf16_relu_is_torch_relu_bit_for_bit_on_finite_values():
    x = (torch.randn(4096, generator=torch.Generator().manual_seed(1)) * 3).bfloat16()
    want = torch.relu(x)
    got = relu_(x.clone())
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


def test_other_dtypes_take_torch_relu_in_place():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0], requires_grad=True)
    y = relu_(x * 1)
    y.sum().backward()
    assert y.tolist() == [0.0, 0.0, 0.0, 0.5, 3.0]
    assert x.grad.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_module_is_an_in_place_relu_whose_checkpoints_load_both_ways():
    assert isinstance(ReLU(), nn.ReLU) and ReLU().inplace
    tower = VGGTower(1, [4, 8])
    assert sum(isinstance(m, ReLU) for m in tower.modules()) == 4
    plain = VGGTower(1, [4, 8])
    plain.body = nn.Sequential(
        *[nn.ReLU(inplace=True) if isinstance(m, ReLU) else m for m in plain.body]
    )
    plain.load_state_dict(tower.state_dict())  # same keys: no parameter was added or renamed
    x = torch.randn(2, 1, 16, 12)
    with torch.no_grad():
        tower.eval(), plain.eval()
        assert torch.equal(tower(x), plain(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(tower(x), plain(x))
