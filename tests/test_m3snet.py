"""M3SNet: NAFBlock reuse, the feature fusion middleware's two orders, MHAMB, and the released key layout.

The shared contract (odd sizes, backward, published parameter counts) is in test_archs.py.
"""
import glob
import os.path as osp

import pytest
import torch
import yaml
from basicsr.archs import build_network

from ecma_basicsr.archs.m3snet_arch import MHAMB, PRESETS, M3SNet, M3SNetLocal
from ecma_basicsr.archs.nafnet_arch import LocalAvgPool2d, NAFBlock

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def tiny(**kw):
    return M3SNet(width=8, enc_blk_nums=[1, 1, 1, 1], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1], num_heads=2, **kw)


def encoder_features(net, seed=0):
    torch.manual_seed(seed)
    return [torch.randn(1, 8 * 2 ** i, 16 // 2 ** i, 16 // 2 ** i, requires_grad=True) for i in range(4)]


def test_blocks_are_nafnets():
    net = tiny()
    assert isinstance(net.encoders[0][0], NAFBlock) and isinstance(net.middle[0][0], NAFBlock)
    assert isinstance(net.middle_blks[0], MHAMB)
    assert len(net.middle) == 5  # mountain of 3 + 2 fusion nodes for four levels


def test_released_order_is_the_authors_loop():
    """'released' reproduces the released forward: row 2 visited shallow to deep on row-1 results."""
    net = tiny(ffm_order='released').eval()
    e = encoder_features(net)
    with torch.no_grad():
        fs = [net.middle[i](e[i] + net.middle_ups[i](e[i + 1])) for i in range(3)] + [e[3]]
        for i in range(2):
            fs[i] = net.middle[i + 3](fs[i] + net.middle_ups[i + 3](fs[i + 1]))
        for got, want in zip(net.ffm(e), fs):
            assert torch.equal(got, want)


@pytest.mark.parametrize('order,reaches', [('sequential', True), ('released', False)])
def test_which_levels_reach_full_resolution(order, reaches):
    """The paper: "sequentially down to the lowest layer ... all information is fused into the original
    resolution". Only the deep-to-shallow order lets the deepest encoder level reach the level-0 skip."""
    net = tiny(ffm_order=order)
    for p in net.parameters():  # NAFBlocks start as identities (beta = gamma = 0); open them
        if p.dim() == 4 and p.shape[0] == 1:
            torch.nn.init.constant_(p, 0.5)
    e = encoder_features(net)
    net.ffm(e)[0].sum().backward()
    assert (e[3].grad is not None and e[3].grad.abs().sum() > 0) == reaches
    assert e[2].grad.abs().sum() > 0  # level 2 reaches level 0 in both orders


def test_mhamb_attends_across_channels_at_any_size():
    """Channel attention: the attention map is (C/h x C/h), so cost is linear in the pixel count."""
    torch.manual_seed(0)
    block = MHAMB(16, num_heads=4)
    for h, w in ((1, 1), (5, 3), (64, 96)):
        assert block(torch.randn(2, 16, h, w)).shape == (2, 16, h, w)
    assert all(p.dim() != 1 for n, p in block.named_parameters() if n != 'temperature')  # bias-free


def test_state_dict_keys_follow_the_release():
    keys = set(M3SNet(variant='GoPro-width32').state_dict())
    for key in ('intro.weight', 'ending.bias', 'encoders.3.27.beta', 'downs.0.weight', 'middle_blks.0.temperature',
                'middle_blks.0.qkv.weight', 'middle_blks.0.qkv_dwconv.weight', 'middle_blks.0.project_out.weight',
                'ups.0.0.weight', 'decoders.3.0.gamma', 'middle.4.0.sca.1.weight', 'middle_ups.2.0.weight'):
        assert key in keys, key


def test_unknown_variant_and_order_fail_clearly():
    with pytest.raises(ValueError, match='GoPro-width32'):
        M3SNet(variant='SIDD')
    with pytest.raises(ValueError, match='ffm_order'):
        tiny(ffm_order='random')


def test_released_order_is_the_default():
    assert tiny().ffm_order == 'released'
    with torch.device('meta'):
        net = M3SNet()
    assert net.ffm_order == 'released' and net.width == 32  # the authors' defaults


def test_presets_give_the_published_parameter_counts():
    for name, preset in PRESETS.items():
        with torch.device('meta'):
            net = M3SNet(**preset.kwargs)
        assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == round(preset.params / 1e6, 2), name
        assert net.in_channels == 3 and net.upscale == 1
    with torch.device('meta'):
        assert M3SNet(variant='M3SNet-GoPro-width64').width == 64


def test_local_variant_pools_locally_everywhere_including_the_fusion_nodes():
    net = M3SNetLocal(width=8, enc_blk_nums=[1, 1, 1, 1], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1], num_heads=2,
                      train_size=(1, 3, 64, 64))
    pools = [m for m in net.modules() if isinstance(m, LocalAvgPool2d)]
    assert len(pools) == 4 + 4 + 5 and all(p.kernel_size is not None for p in pools)
    assert net.middle[0][0].sca[0].kernel_size == (96, 96)  # level 0: 1.5 x 64
    assert net.middle[4][0].sca[0].kernel_size == (48, 48)  # row 2, level 1
    assert net.middle[2][0].sca[0].kernel_size == (24, 24)  # row 1, level 2
    plain = tiny()
    plain.load_state_dict(net.state_dict())  # TLC has no parameters
    assert not any(p.kernel_size for p in plain.modules() if isinstance(p, LocalAvgPool2d))


def test_local_changes_large_images_only():
    torch.manual_seed(0)
    plain = tiny().eval()
    for p in plain.parameters():
        if p.dim() == 4 and p.shape[0] == 1:
            torch.nn.init.normal_(p, std=0.5)
    local = M3SNetLocal(width=8, enc_blk_nums=[1, 1, 1, 1], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1],
                        num_heads=2, train_size=(1, 3, 16, 16)).eval()
    local.load_state_dict(plain.state_dict())
    small, big = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(plain(small), local(small), atol=1e-6)  # windows of 24 cover 16 x 16
        assert not torch.allclose(plain(big), local(big), atol=1e-4)


M3SNET_OPTIONS = sorted(glob.glob(osp.join(REPO, 'options', '*', 'M3SNet_*.yml')))


@pytest.mark.parametrize('path', M3SNET_OPTIONS, ids=[osp.basename(p) for p in M3SNET_OPTIONS])
def test_option_files_use_the_released_order_and_test_with_tlc(path):
    with open(path) as f:
        opt = yaml.safe_load(f)
    with torch.device('meta'):
        net = build_network(dict(opt['network_g']))
    assert net.ffm_order == 'released'
    assert net.tlc == path.endswith('_test.yml')  # the authors test with M3SNetLocal
    if net.tlc:
        assert type(net) is M3SNetLocal and list(net.train_size)[-2:] == [256, 256]
    width = 32 if 'width32' in path else 64
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(PRESETS[f'M3SNet-GoPro-width{width}'].params,
                                                                     rel=5e-4)
