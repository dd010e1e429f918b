"""One parametrized contract for every registered network (timm style).

TINY cases: built through BasicSR's registry from an option-style dict, then forward on odd
sizes (output = input size x scale), backward (every parameter gets a finite gradient).
Presets: every published configuration in the arch files' ``PRESETS`` tables has its published parameter
count within the preset's tolerance (``test_options.py`` holds every option file's network to its preset).
"""
import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from network_cases import TINY

from ecma_basicsr.archs.presets import all_presets

PRESETS = {name: p for name, p in all_presets().items() if p.params}

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


def _params(arch, kwargs):
    return sum(p.numel() for p in build_network({'type': arch, **kwargs}).parameters())


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_published_parameter_count(name):
    p = PRESETS[name]
    n = _params(p.arch, p.kwargs)
    assert abs(n / p.params - 1) <= p.rtol, f'{name}: {n / 1e6:.3f} M vs published {p.params / 1e6:.2f} M ({p.source})'


def test_every_plugin_arch_has_a_case():
    import ecma_basicsr.archs as archs_pkg
    ours = {name for name, obj in ARCH_REGISTRY
            if getattr(obj, '__module__', '').startswith(archs_pkg.__name__)}
    covered = {c.arch for c in TINY}
    assert ours <= covered, f'registered networks without a TINY case in tests/network_cases.py: {ours - covered}'
