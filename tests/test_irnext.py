"""IRNeXt: LAM and MSM against the paper's equations written out, the multi-output contract, the
dual-domain loss (Eq. 8-10), and the GoPro option file training through ``basicsr train`` with it.

The shared contract (odd sizes, backward, published parameter counts) is in test_archs.py.
"""
import glob

import pytest
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss

from ecma_basicsr.archs.irnext_arch import IRNeXt, LocalAttention, MultiScaleModule
from helpers import run_cli


def lam_reference(lam, x):
    """Eq. 3-7 written out with ``unfold``, one channel at a time (independent of the grouped conv)."""
    y = lam.conv(x)
    b, c, h, w = y.shape
    groups, k = lam.groups, lam.kernel_size
    attn = torch.tanh(lam.to_weights(y.mean((2, 3), keepdim=True))).view(b, groups, k * k)  # Eq. 3
    low = torch.full_like(attn, 1.0 / k ** 2)  # Eq. 4: direct-current filter
    high = attn - low  # Eq. 5
    patches = F.unfold(y, k, padding=k // 2).view(b, c, k * k, h, w)
    out = torch.zeros_like(y)
    for ch in range(c):
        g = ch // (c // groups)
        kernel = low[:, g] + lam.modulation[ch] * high[:, g]  # Eq. 6
        out[:, ch] = (patches[:, ch] * kernel[:, :, None, None]).sum(1)
    return out + y  # Eq. 7


def test_lam_matches_equations_3_to_7():
    torch.manual_seed(0)
    lam = LocalAttention(16, groups=8, kernel_size=3)
    with torch.no_grad():
        lam.modulation.uniform_(0.5, 2.0)  # W of Eq. 6 away from its initial 1
    x = torch.randn(2, 16, 9, 11)
    with torch.no_grad():
        assert torch.allclose(lam(x), lam_reference(lam, x), atol=1e-5)


def test_filter_modulation_starts_as_plain_tanh_attention():
    """W = 1 at initialisation, so A_l + W * A_h = A: FM is a no-op until trained (Eq. 6)."""
    lam = LocalAttention(8, groups=8)
    assert torch.equal(lam.modulation, torch.ones(8))


def test_msm_matches_equations_1_and_2():
    torch.manual_seed(0)
    msm = MultiScaleModule(8, groups=8)
    x = torch.randn(1, 8, 32, 48)

    def up(t, size):
        return F.interpolate(t, size=size, mode='bilinear', align_corners=False)

    with torch.no_grad():
        x1 = msm.lams[0](F.avg_pool2d(x, 8))  # i = 1: rate 8, X_0 = 0
        x2 = msm.lams[1](F.avg_pool2d(x, 4) + up(x1, (8, 12)))  # Eq. 1, rate 4
        x3 = msm.lams[2](F.avg_pool2d(x, 2) + up(x2, (16, 24)))  # Eq. 1, rate 2
        ref = msm.fuse(x + up(x1, (32, 48)) + up(x2, (32, 48)) + up(x3, (32, 48)))  # Eq. 2
        assert torch.allclose(msm(x), ref, atol=1e-5)


def test_outputs_full_resolution_by_default_and_all_three_on_request():
    torch.manual_seed(0)
    net = IRNeXt(width=8, num_blocks=1, return_all_train=True)
    x = torch.rand(1, 3, 37, 53)
    outs = net(x)  # training mode + return_all_train: the loss gets every output
    assert [tuple(o.shape[-2:]) for o in outs] == [(10, 14), (19, 27), (37, 53)]
    net.eval()
    with torch.no_grad():
        y = net(x)  # what BasicSR validates
        assert torch.is_tensor(y) and y.shape == x.shape
        assert torch.allclose(y, net(x, return_all=True)[-1])
    with pytest.raises(ValueError, match='multi_output'):
        IRNeXt(width=8, num_blocks=1, multi_output=False)(x, return_all=True)


def test_multi_output_loss_trains_every_parameter():
    torch.manual_seed(0)
    net = IRNeXt(width=8, num_blocks=2, return_all_train=True).train()
    loss = build_loss({'type': 'IRNeXtLoss'})
    loss(net(torch.rand(2, 3, 24, 40)), torch.rand(2, 3, 24, 40)).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_loss_is_equations_8_to_10():
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 32, 48)
    preds = [torch.rand(2, 3, 8, 12), torch.rand(2, 3, 16, 24), torch.rand(2, 3, 32, 48)]
    targets = [F.avg_pool2d(gt, 4), F.avg_pool2d(gt, 2), gt]

    def spectrum(t):
        return torch.view_as_real(torch.fft.fft2(t))

    spatial = sum(F.l1_loss(p, t) for p, t in zip(preds, targets))  # Eq. 8 (1/P: mean)
    frequency = sum(F.l1_loss(spectrum(p), spectrum(t)) for p, t in zip(preds, targets))  # Eq. 9
    loss = build_loss({'type': 'IRNeXtLoss', 'loss_weight': 2.0})
    assert torch.allclose(loss(preds, gt), 2.0 * (spatial + 0.1 * frequency))  # Eq. 10, lambda = 0.1
    # a single tensor is one scale; freq_weight 0 leaves the spatial term
    only_l1 = build_loss({'type': 'IRNeXtLoss', 'freq_weight': 0})
    assert torch.allclose(only_l1(preds[-1], gt), F.l1_loss(preds[-1], gt))
    with pytest.raises(ValueError, match='single output'):
        build_loss({'type': 'IRNeXtLoss', 'reduction': 'none'})(preds, gt)


def test_gopro_option_file_trains_with_the_multi_output_loss(tmp_path):
    """options/table2_gopro/IRNeXt_GoPro_train.yml, two iterations on a tiny GoPro-layout sample."""
    from datasets_prep.sample import make_sample
    from conftest import REPO
    make_sample('deblur', str(tmp_path / 'datasets' / 'GoPro'), like='gopro', crop=64, step=64, frames=1,
                max_side=128, train_photos=('astronaut', 'rocket'), test_photos=('chelsea',))
    path = f'{REPO}/options/table2_gopro/IRNeXt_GoPro_train.yml'
    res = run_cli(['train', '-opt', path, '--force_yml', 'num_gpu=0', 'network_g:width=8', 'network_g:num_blocks=1',
                   'train:total_iter=2', 'train:warmup_iter=0', 'datasets:train:gt_size=32',
                   'datasets:train:batch_size_per_gpu=2', 'datasets:train:num_worker_per_gpu=0',
                   'logger:print_freq=1', 'logger:use_tb_logger=false', 'val:val_freq=2'], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    log = open(glob.glob(str(tmp_path / 'experiments/IRNeXt_GoPro/train_*.log'))[0]).read()
    assert 'iter:       2' in log and 'l_pix' in log and '# psnr:' in log
