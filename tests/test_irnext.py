"""IRNeXt: LAM and MSM written out from the description of the authors' release, the output contract
(theirs and ours), presets, key names, the dual-domain loss (Eq. 8-10), and the GoPro option file
training through ``basicsr train`` with it.

The shared contract (odd sizes, backward, published parameter counts) is in test_archs.py; equivalence
with the authors' code on their fixtures is in test_golden.py.
"""
import glob

import pytest
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss
from helpers import run_cli

from ecma_basicsr.archs.irnext_arch import PRESETS, DynamicFilter, IRNeXt, MultiScaleModule
from ecma_basicsr.archs.state_dict_check import CheckpointMismatchError


def lam_reference(lam, x):
    """LAM as described in the module docstring, one channel at a time with ``unfold``."""
    n, c, h, w = x.shape
    k, groups = lam.kernel_size, lam.groups
    gap = x.mean((2, 3), keepdim=True)
    attn = torch.tanh(lam.bn(lam.conv(gap))).view(n, groups, k * k)  # Eq. 3 (+ the release's BatchNorm)
    patches = F.unfold(F.pad(x, (k // 2,) * 4, mode='reflect'), k).view(n, c, k * k, h, w)
    out = torch.zeros_like(x)
    for ch in range(c):
        g = ch // (c // groups)
        agg = (patches[:, ch] * attn[:, g, :, None, None]).sum(1)
        wgt = 1 + lam.inside_all[ch]
        low = wgt * agg - (wgt - 1) * gap[:, ch]
        out[:, ch] = lam.lamb_l[ch] * low + (1 + lam.lamb_h[ch]) * x[:, ch]
    return out


def _perturb(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(('lamb_l', 'lamb_h', 'inside_all')):
                p.uniform_(-0.5, 0.5)  # away from the identity start
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return module.eval()


def test_lam_matches_the_described_release():
    torch.manual_seed(0)
    lam = _perturb(DynamicFilter(16, kernel_size=3, groups=8))
    x = torch.randn(2, 16, 9, 11)
    with torch.no_grad():
        assert torch.allclose(lam(x), lam_reference(lam, x), atol=1e-5)
        assert lam(torch.randn(1, 16, 1, 1)).shape == (1, 16, 1, 1)  # too small to reflect: replicate


def test_lam_starts_as_the_identity():
    lam = DynamicFilter(8, groups=8).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        assert torch.equal(lam(x), x)  # lamb_l = 0, lamb_h = 0


def test_msm_matches_equations_1_and_2_with_the_release_details():
    torch.manual_seed(0)
    msm = _perturb(MultiScaleModule(8, groups=8))
    x = torch.randn(1, 8, 32, 48)

    def up(t, size):
        return F.interpolate(t, size=size, mode='bilinear', align_corners=True)

    def branch(i, t):
        return msm.dynas[i](msm.convs[i](t))

    with torch.no_grad():
        x1 = branch(0, F.avg_pool2d(x, 8))  # i = 1: rate 8, X_0 = 0
        x2 = branch(1, F.avg_pool2d(x, 4) + up(x1, (8, 12)))  # Eq. 1, rate 4
        x3 = branch(2, F.avg_pool2d(x, 2) + up(x2, (16, 24)))  # Eq. 1, rate 2
        ref = msm.conv_sum(F.gelu(x + up(x1, (32, 48)) + up(x2, (32, 48)) + up(x3, (32, 48))))  # Eq. 2
        assert torch.allclose(msm(x), ref, atol=1e-5)


def test_authors_arguments_give_their_three_outputs_ours_the_image():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 37, 53)
    sizes = [(10, 14), (19, 27), (37, 53)]
    authors = IRNeXt(num_res=1).eval()  # the release's constructor: a list in every mode
    with torch.no_grad():
        assert [tuple(o.shape[-2:]) for o in authors(x)] == sizes
    ours = IRNeXt(width=8, num_blocks=1, return_all_train=True)
    # training mode: the loss gets every output (LAM's BatchNorm needs a batch of 2 or more)
    assert [tuple(o.shape) for o in ours(x.expand(2, -1, -1, -1))] == [(2, 3) + s for s in sizes]
    with pytest.raises(ValueError, match='batch_size_per_gpu >= 2'):
        ours(x)
    ours.eval()
    with torch.no_grad():
        y = ours(x)  # what BasicSR validates
        assert torch.is_tensor(y) and y.shape == x.shape
        assert torch.allclose(y, ours(x, return_all=True)[-1])
    assert torch.is_tensor(IRNeXt(num_res=1, return_all_eval=False).eval()(x))
    assert isinstance(IRNeXt(variant='dehaze', width=8, return_all_eval=True).eval()(x), list)
    with pytest.raises(ValueError, match='multi_output'):
        IRNeXt(width=8, num_blocks=1, multi_output=False)(x, return_all=True)
    with pytest.raises(ValueError, match='num_res'):
        IRNeXt(num_res=2, num_blocks=3)


def test_presets_give_the_published_parameter_counts_and_the_authors_keys():
    for name, preset in PRESETS.items():
        with torch.device('meta'):
            net = IRNeXt(**preset.kwargs)
        assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == round(preset.params / 1e6, 2), name
    with torch.device('meta'):
        default = IRNeXt()
        assert default.num_blocks == 4 and IRNeXt(variant='IRNeXt-gopro').num_blocks == 14
    keys = set(default.state_dict())
    for key in ('feat_extract.0.main.0.weight', 'feat_extract.3.main.0.bias',
                'Encoder.0.layers.3.main.1.convs.0.weight',
                'Encoder.2.layers.3.main.1.dynas.2.bn.running_var', 'Decoder.1.layers.0.main.2.main.0.weight',
                'Decoder.0.layers.3.main.1.dynas.0.inside_all', 'Decoder.0.layers.3.main.1.conv_sum.weight',
                'Convs.1.main.0.weight', 'ConvsOut.1.main.0.bias', 'FAM1.merge.main.0.weight',
                'SCM2.main.4.weight', 'SCM1.main.0.main.0.weight'):
        assert key in keys, key
    assert default.in_channels == 3 and default.upscale == 1


def test_a_checkpoint_of_another_layout_is_refused_with_a_hint():
    net = IRNeXt(width=8, num_blocks=1)
    with pytest.raises(CheckpointMismatchError, match="authors' layout"):
        net.load_state_dict({'shallow.weight': torch.zeros(8, 3, 3, 3)})
    sd = IRNeXt(width=8, num_blocks=2).state_dict()
    with pytest.raises(CheckpointMismatchError, match='num_res=2'):
        net.load_state_dict(sd)


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
    # the release resizes the targets bilinearly (x0.25 and x0.5, no antialiasing)
    targets = [F.interpolate(gt, scale_factor=s, mode='bilinear') for s in (0.25, 0.5)] + [gt]
    assert torch.allclose(targets[1], F.avg_pool2d(gt, 2), atol=1e-6)  # at 1/2 it is the 2x2 mean
    rows = (gt[..., 1::4, :] + gt[..., 2::4, :]) / 2  # at 1/4: the two middle rows / columns of each 4 x 4 cell
    assert torch.allclose(targets[0], (rows[..., 1::4] + rows[..., 2::4]) / 2, atol=1e-6)

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
    from conftest import REPO

    from datasets_prep.sample import make_sample
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
