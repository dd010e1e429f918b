"""FFTLoss: zero for identical inputs, equal to a direct computation, weights and reductions."""
import numpy as np
import pytest
import torch
from basicsr.losses import build_loss


def direct_fft_l1(pred, target):
    fp, ft = np.fft.fft2(pred.double().numpy()), np.fft.fft2(target.double().numpy())
    return np.mean(np.abs(np.stack([fp.real - ft.real, fp.imag - ft.imag])))


def test_zero_for_identical_inputs():
    x = torch.rand(2, 3, 17, 9)
    assert build_loss({'type': 'FFTLoss'})(x, x.clone()).item() == 0.0


@pytest.mark.parametrize('shape', [(1, 3, 8, 8), (2, 1, 37, 53), (1, 3, 1, 1)])
def test_matches_direct_computation(shape):
    torch.manual_seed(0)
    a, b = torch.rand(shape), torch.rand(shape)
    loss = build_loss({'type': 'FFTLoss', 'loss_weight': 0.05})(a, b)
    assert loss.item() == pytest.approx(0.05 * direct_fft_l1(a, b), rel=1e-5)


def test_reductions_weight_and_finiteness():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 10, 12), torch.rand(2, 3, 10, 12)
    none = build_loss({'type': 'FFTLoss', 'reduction': 'none'})(a, b)
    assert none.shape == (2, 3, 10, 12, 2)
    total = build_loss({'type': 'FFTLoss', 'reduction': 'sum'})(a, b)
    assert total.item() == pytest.approx(none.sum().item(), rel=1e-5)
    w = torch.zeros(2, 3, 10, 12)
    assert build_loss({'type': 'FFTLoss', 'reduction': 'sum'})(a, b, weight=w).item() == 0.0
    big = build_loss({'type': 'FFTLoss'})(a.half() * 6e4, b.half())
    assert torch.isfinite(big)
    with pytest.raises(ValueError, match='reduction must be one of'):
        build_loss({'type': 'FFTLoss', 'reduction': 'avg'})


def test_gradient_flows():
    a = torch.rand(1, 3, 8, 8, requires_grad=True)
    build_loss({'type': 'FFTLoss'})(a, torch.zeros(1, 3, 8, 8)).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
