"""One parametrized contract for every registered network (timm style).

TINY cases: built through BasicSR's registry from an option-style dict, then forward on odd
sizes (output = input size x scale), backward (every parameter gets a finite gradient).
FULL cases: the published configuration's parameter count within the case's tolerance.
"""
import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from network_cases import FULL, TINY

SIZES = [(1, 1), (37, 53), (16, 9)]


def build(case):
    return build_network({'type': case.arch, **case.kwargs})


@pytest.mark.parametrize('case', TINY, ids=[c.id for c in TINY])
def test_forward_odd_sizes(case):
    torch.manual_seed(0)
    net = build(case).eval()
    for h, w in SIZES:
        with torch.no_grad():
            y = net(torch.rand(1, case.in_ch, h, w))
        assert y.shape[-2:] == (h * case.scale, w * case.scale), (h, w)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize('case', TINY, ids=[c.id for c in TINY])
def test_backward_reaches_every_parameter(case):
    torch.manual_seed(0)
    net = build(case).train()
    for p in net.parameters():  # zero-initialised scales would hide gradients of inner layers
        if p.dim() == 4 and p.shape[0] == 1 and p.shape[2:] == (1, 1):
            torch.nn.init.constant_(p, 0.1)
    x = torch.rand(2, case.in_ch, 24, 20)
    outputs = net(x, return_all=True) if case.multi_output else [net(x)]
    sum(y.square().mean() for y in outputs).backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'parameters without gradient: {missing[:5]}'
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize('case', FULL, ids=[c.id for c in FULL])
def test_published_parameter_count(case):
    net = build(case)
    n = sum(p.numel() for p in net.parameters())
    assert abs(n / case.params - 1) <= case.rtol, f'{case.id}: {n / 1e6:.3f} M vs published {case.params / 1e6:.2f} M'


def test_every_plugin_arch_has_a_case():
    import ecma_basicsr.archs as archs_pkg
    ours = {name for name, obj in ARCH_REGISTRY._obj_map.items()
            if getattr(obj, '__module__', '').startswith(archs_pkg.__name__)}
    covered = {c.arch for c in TINY}
    assert ours <= covered, f'registered networks without a TINY case in tests/network_cases.py: {ours - covered}'
