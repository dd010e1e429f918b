"""FFTLoss: zero for identical inputs, equal to a direct computation, weights and reductions; PSNRLoss."""
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


# --- PSNRLoss (NAFNet's training loss) ---
def psnr_db(a, b):
    """PSNR in dB of one image pair in [0, 1], in float64 numpy."""
    mse = np.mean((a.double().numpy() - b.double().numpy()) ** 2)
    return 10 * np.log10(1.0 / mse)


def test_psnr_loss_is_minus_the_mean_per_image_psnr():
    torch.manual_seed(0)
    target = torch.rand(3, 3, 12, 10)
    # very different errors per image: the batch mean of PSNRs differs from the PSNR of the batch MSE
    pred = (target + torch.randn_like(target) * torch.tensor([0.01, 0.1, 0.3]).view(3, 1, 1, 1)).clamp(0, 1)
    expected = -np.mean([psnr_db(p, t) for p, t in zip(pred, target)])
    loss = build_loss({'type': 'PSNRLoss'})(pred, target)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    batch_mse_psnr = psnr_db(pred, target)
    assert abs(expected + batch_mse_psnr) > 1.0
    assert build_loss({'type': 'PSNRLoss', 'loss_weight': 0.5})(pred, target).item() == pytest.approx(expected / 2,
                                                                                                     rel=1e-5)
    per_image = build_loss({'type': 'PSNRLoss', 'reduction': 'none'})(pred, target)
    assert per_image.shape == (3,)
    assert per_image[1].item() == pytest.approx(-psnr_db(pred[1], target[1]), rel=1e-5)
    total = build_loss({'type': 'PSNRLoss', 'reduction': 'sum'})(pred, target)
    assert total.item() == pytest.approx(3 * expected, rel=1e-5)


def test_psnr_loss_identical_images_and_gradient_are_finite():
    x = torch.rand(2, 3, 8, 8)
    same = build_loss({'type': 'PSNRLoss'})(x, x.clone())
    assert same.item() == pytest.approx(10 * np.log10(1e-8), rel=1e-6)  # the 1e-8 keeps it finite: -80 dB
    pred = torch.rand(2, 3, 8, 8, requires_grad=True)
    build_loss({'type': 'PSNRLoss'})(pred, x).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    half = build_loss({'type': 'PSNRLoss'})(x.half(), x.half())
    assert torch.isfinite(half) and half.dtype == torch.float32


def test_psnr_loss_toy_compares_the_bt601_luma():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 9, 7), torch.rand(2, 3, 9, 7)

    def luma(x):  # by hand: Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255
        r, g, bl = x[:, 0], x[:, 1], x[:, 2]
        return (16 + 65.481 * r + 128.553 * g + 24.966 * bl) / 255

    expected = -np.mean([psnr_db(luma(a)[i], luma(b)[i]) for i in range(2)])
    loss = build_loss({'type': 'PSNRLoss', 'toY': True})(a, b)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() != pytest.approx(build_loss({'type': 'PSNRLoss'})(a, b).item(), rel=1e-3)
    # colour shifts that keep the luma are invisible with toY
    shift = torch.tensor([128.553, -65.481, 0.]).view(1, 3, 1, 1) * 1e-3
    assert build_loss({'type': 'PSNRLoss', 'toY': True})(a + shift, a).item() == pytest.approx(-80, abs=0.5)


def test_psnr_loss_rejects_bad_options_and_inputs():
    with pytest.raises(ValueError, match="PSNRLoss reduction must be one of .*got 'avg'"):
        build_loss({'type': 'PSNRLoss', 'reduction': 'avg'})
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match='toY: true needs RGB inputs'):
        build_loss({'type': 'PSNRLoss', 'toY': True})(x, x)
    with pytest.raises(ValueError, match='equal shape'):
        build_loss({'type': 'PSNRLoss'})(x, torch.rand(1, 1, 4, 5))
    with pytest.raises(ValueError, match='no element-wise weight'):
        build_loss({'type': 'PSNRLoss'})(x, x, weight=torch.ones_like(x))
