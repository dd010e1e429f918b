"""NAFNet: TLC's local statistics, presets, authors' key names, option files.

The generic contract (odd sizes, backward, published parameter counts) is in test_archs.py.
"""
import glob
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
import yaml

from ecma_basicsr.archs.nafnet_arch import NAFNET_VARIANTS, LocalAvgPool2d, NAFBlock, NAFNet, NAFNetLocal
from ecma_basicsr.archs.state_dict_check import CheckpointMismatchError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = dict(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1])


def test_local_pool_is_a_valid_window_mean_with_replicated_borders():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 13, 17)
    y = LocalAvgPool2d((5, 7))(x)
    valid = F.avg_pool2d(x, (5, 7), stride=1)  # 9 x 11 valid means
    assert y.shape == x.shape
    assert torch.allclose(y[..., 2:11, 3:14], valid, atol=1e-6)
    assert torch.allclose(y[..., :2, :3], valid[..., :1, :1].expand(-1, -1, 2, 3), atol=1e-6)
    assert torch.allclose(y[..., -2:, -3:], valid[..., -1:, -1:].expand(-1, -1, 2, 3), atol=1e-6)
    # a window covering the map is the global mean (SCA's pooling)
    assert torch.allclose(LocalAvgPool2d((13, 17))(x), x.mean((2, 3), keepdim=True), atol=1e-6)
    assert LocalAvgPool2d(None)(x).shape == (2, 3, 1, 1)


def test_tlc_windows_follow_the_training_patch_per_level():
    net = NAFNet(**dict(SMALL, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1]), tlc=True, train_size=256)
    assert net.encoders[0][0].sca[0].kernel_size == (384, 384)  # 1.5 x 256 at full resolution
    assert net.encoders[3][0].sca[0].kernel_size == (48, 48)
    assert net.middle_blks[0].sca[0].kernel_size == (24, 24)
    assert net.decoders[-1][0].sca[0].kernel_size == (384, 384)
    net.set_tlc(False)
    assert all(b.sca[0].kernel_size is None for b in net.modules() if isinstance(b, NAFBlock))


def _randomise(net):
    torch.manual_seed(1)
    for n, p in net.named_parameters():
        if n.endswith(('beta', 'gamma')):
            torch.nn.init.normal_(p, std=0.5)  # make the blocks (and so SCA) matter
    return net.eval()


def test_tlc_equals_global_pooling_at_the_training_size_and_differs_on_larger_images():
    torch.manual_seed(0)
    net = _randomise(NAFNet(**SMALL))
    x_train = torch.rand(1, 3, 16, 16)
    x_big = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        y_global = net(x_train), net(x_big)
        net.set_tlc(True, train_size=16)
        y_tlc = net(x_train), net(x_big)
    assert torch.allclose(y_global[0], y_tlc[0], atol=1e-6)  # window 24 > 16: still global
    assert not torch.allclose(y_global[1], y_tlc[1], atol=1e-4)  # local statistics on 40 x 56


def test_nafnetlocal_is_nafnet_with_tlc_and_accepts_the_authors_train_size():
    net = NAFNetLocal(**SMALL, train_size=(1, 3, 256, 256), fast_imp=False)
    assert net.tlc and net.encoders[0][0].sca[0].kernel_size == (384, 384)
    plain = NAFNet(**SMALL)
    plain.load_state_dict(net.state_dict())  # TLC has no parameters: same checkpoint either way


def test_state_dict_uses_the_authors_key_names():
    keys = set(NAFNet(**SMALL).state_dict())
    for k in ['intro.weight', 'ending.bias', 'encoders.0.0.norm1.weight', 'encoders.0.0.sca.1.weight',
              'encoders.0.0.beta', 'downs.1.weight', 'middle_blks.0.conv4.weight', 'ups.0.0.weight',
              'decoders.1.0.gamma']:
        assert k in keys, k
    assert 'ups.0.0.bias' not in keys


def test_mismatched_checkpoint_names_the_checkpoint_configuration():
    small = NAFNet(**SMALL)
    wider = NAFNet(**dict(SMALL, width=16, middle_blk_num=2))
    sd = {'module.' + k: v for k, v in small.state_dict().items()}  # DataParallel prefix is accepted
    with pytest.raises(CheckpointMismatchError) as err:
        wider.load_state_dict(sd)
    msg = str(err.value)
    assert 'intro.weight: (8, 3, 3, 3) vs (16, 3, 3, 3)' in msg
    assert 'middle_blks.1.beta' in msg
    assert 'width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1]' in msg
    NAFNet(**SMALL).load_state_dict(sd)  # the right configuration loads


def test_variants_and_overrides():
    assert NAFNet(variant='sidd-width32', width=8).width == 8
    with torch.device('meta'):
        assert NAFNet(variant='REDS-width64').enc_blk_nums == [1, 1, 1, 28]
    with pytest.raises(ValueError, match='Unknown NAFNet variant'):
        NAFNet(variant='GoPro-width16')


NAFNET_OPTIONS = sorted(glob.glob(osp.join(REPO, 'options', '*', 'NAFNet_*.yml')))
PUBLISHED = {'gopro-width32': 17.11e6, 'gopro-width64': 67.89e6, 'reds-width64': 67.89e6,
             'sidd-width32': 29.16e6, 'sidd-width64': 115.98e6}


@pytest.mark.parametrize('path', NAFNET_OPTIONS, ids=[osp.relpath(p, REPO) for p in NAFNET_OPTIONS])
def test_option_files_build_the_published_network(path):
    opt = yaml.safe_load(open(path))
    net_opt = dict(opt['network_g'])
    arch = net_opt.pop('type')
    assert arch in ('NAFNet', 'NAFNetLocal')
    with torch.device('meta'):
        net = (NAFNetLocal if arch == 'NAFNetLocal' else NAFNet)(**net_opt)
    variant = osp.basename(path).split('_')[1].lower()
    assert variant in NAFNET_VARIANTS
    n = sum(p.numel() for p in net.parameters())
    assert math.isclose(n, PUBLISHED[variant], rel_tol=0.01)
    # TLC is the GoPro / REDS test protocol (NAFNet's published numbers); SIDD is tested without it.
    if path.endswith('_test.yml'):
        assert net.tlc == (not variant.startswith('sidd'))
