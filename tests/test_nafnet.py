"""NAFNet: TLC's local statistics, presets, authors' key names, option files; NAFNetSR (single-image NAFSSR).

The generic contract (odd sizes, backward, published parameter counts) is in test_archs.py.
"""
import glob
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
import yaml

from ecma_basicsr.archs.nafnet_arch import PRESETS, LocalAvgPool2d, NAFBlock, NAFNet, NAFNetLocal, NAFNetSR, tlc_windows
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
        assert NAFNet(variant='NAFNet-SIDD-width64').middle_blk_num == 12  # the full preset name works too
    with pytest.raises(ValueError, match="Unknown NAFNet variant 'GoPro-width16'; valid choices: GoPro-width32"):
        NAFNet(variant='GoPro-width16')


def test_presets_give_the_published_parameter_counts():
    for name, preset in PRESETS.items():
        with torch.device('meta'):
            net = NAFNet(**preset.kwargs)
        assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == round(preset.params / 1e6, 2), name
        assert net.in_channels == 3 and net.upscale == 1


def test_tlc_windows_use_the_padded_training_size():
    """The authors fix each window in one pass at train_size, after padding it to a multiple of 16."""
    assert tlc_windows(256, 0, 16) == ((384, 384), (5, 5))
    assert tlc_windows((1, 3, 256, 256), 4, 16) == ((24, 24), (1, 1))
    # 100 pads to 112: level 0 sees 112 px, window 112 * int(150) // 100 = 168 (not 150); 60 -> 64 * 90 // 60
    assert tlc_windows((1, 3, 100, 60), 0, 16) == ((168, 96), (5, 5))
    assert tlc_windows((1, 3, 100, 60), 2, 16) == ((42, 24), (1, 1))


def test_tlc_window_is_the_map_size_at_train_size_times_the_ratio():
    """Every pooling layer's window, from the map size it sees on a (padded) training input."""
    train = (1, 3, 40, 24)
    net = NAFNetLocal(**dict(SMALL, enc_blk_nums=[1, 1, 1], dec_blk_nums=[1, 1, 1]), train_size=train)
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.__setitem__(m, a[0].shape[-2:]))
             for m in net.modules() if isinstance(m, LocalAvgPool2d)]
    with torch.no_grad():
        net(torch.rand(train))
    for h in hooks:
        h.remove()
    assert len(seen) == 2 * 3 + 1
    for pool, (fh, fw) in seen.items():
        assert pool.kernel_size == (fh * 60 // 40, fw * 36 // 24)


def loop_fast_means(x, kernel, max_stride):
    """fast_imp written out with loops: means of k samples after each grid point, repeated, replicated."""
    h, w = x.shape[-2:]
    rh = min(max_stride[0], next(r for r in (5, 4, 3, 2, 1) if h % r == 0))
    rw = min(max_stride[1], next(r for r in (5, 4, 3, 2, 1) if w % r == 0))
    g = x[..., ::rh, ::rw].double()
    gh, gw = g.shape[-2:]
    kh, kw = min(gh - 1, kernel[0] // rh), min(gw - 1, kernel[1] // rw)
    out = torch.empty(*x.shape[:2], gh - kh, gw - kw, dtype=torch.float64)
    for i in range(gh - kh):
        for j in range(gw - kw):
            out[..., i, j] = g[..., i + 1:i + 1 + kh, j + 1:j + 1 + kw].mean((-2, -1))
    out = out.repeat_interleave(rh, -2).repeat_interleave(rw, -1)
    oh, ow = out.shape[-2:]
    out = F.pad(out, ((w - ow) // 2, (w - ow + 1) // 2, (h - oh) // 2, (h - oh + 1) // 2), mode='replicate')
    return out.float()


@pytest.mark.parametrize('shape,kernel,max_stride', [((20, 30), (9, 12), (5, 5)), ((21, 16), (7, 5), (2, 3)),
                                                      ((12, 12), (6, 6), (1, 1))])
def test_fast_imp_pooling(shape, kernel, max_stride):
    torch.manual_seed(0)
    x = torch.randn(1, 2, *shape)
    y = LocalAvgPool2d(kernel, fast=True, max_stride=max_stride)(x)
    assert y.shape == x.shape
    assert torch.allclose(y, loop_fast_means(x, kernel, max_stride), atol=1e-6)
    if max_stride != (1, 1):  # an approximation: not the exact local means
        assert not torch.allclose(y, LocalAvgPool2d(kernel)(x), atol=1e-3)


def test_fast_imp_is_a_different_network_function_from_exact_tlc():
    torch.manual_seed(0)
    exact = _randomise(NAFNetLocal(**SMALL, train_size=(1, 3, 32, 32)))
    fast = NAFNetLocal(**SMALL, train_size=(1, 3, 32, 32), fast_imp=True).eval()
    fast.load_state_dict(exact.state_dict())
    assert all(m.fast for m in fast.modules() if isinstance(m, LocalAvgPool2d))
    x = torch.rand(1, 3, 80, 120)
    with torch.no_grad():
        assert not torch.allclose(exact(x), fast(x), atol=1e-4)
    exact.set_tlc(True, fast_imp=True)
    with torch.no_grad():
        assert torch.equal(exact(x), fast(x))


NAFNET_OPTIONS = sorted(glob.glob(osp.join(REPO, 'options', '*', 'NAFNet_*.yml')))


@pytest.mark.parametrize('path', NAFNET_OPTIONS, ids=[osp.relpath(p, REPO) for p in NAFNET_OPTIONS])
def test_option_files_build_the_published_network(path):
    opt = yaml.safe_load(open(path))
    net_opt = dict(opt['network_g'])
    arch = net_opt.pop('type')
    assert arch in ('NAFNet', 'NAFNetLocal')
    with torch.device('meta'):
        net = (NAFNetLocal if arch == 'NAFNetLocal' else NAFNet)(**net_opt)
    variant = osp.basename(path).split('_')[1].lower()
    preset = PRESETS['NAFNet-' + {k.lower()[len('nafnet-'):]: k for k in PRESETS}[variant][len('NAFNet-'):]]
    n = sum(p.numel() for p in net.parameters())
    assert math.isclose(n, preset.params, rel_tol=0.005)
    # TLC is the GoPro / REDS test protocol (NAFNet's published numbers); SIDD is tested without it.
    if path.endswith('_test.yml'):
        assert net.tlc == (not variant.startswith('sidd'))


def test_the_authors_network_g_sections_build_the_published_networks():
    """``network_g`` of megvii-research/NAFNet's GoPro test and SIDD option files, as they are."""
    from basicsr.archs import build_network
    gopro = dict(type='NAFNetLocal', width=64, enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1])
    sidd = dict(type='NAFNet', width=32, enc_blk_nums=[2, 2, 4, 8], middle_blk_num=12, dec_blk_nums=[2, 2, 2, 2])
    for net_opt, preset, tlc in ((gopro, 'NAFNet-GoPro-width64', True), (sidd, 'NAFNet-SIDD-width32', False)):
        with torch.device('meta'):
            net = build_network(dict(net_opt))
        assert sum(p.numel() for p in net.parameters()) == pytest.approx(PRESETS[preset].params, rel=5e-4)
        assert net.tlc == tlc and net.train_size == 256  # their default train_size (1, 3, 256, 256)


# --- NAFNetSR: NAFSSR without SCAM ---
SR_SMALL = dict(width=8, num_blks=2)


def _bilinear(x, s):
    return F.interpolate(x, scale_factor=s, mode='bilinear', align_corners=False)


def test_nafnetsr_with_a_zero_upsampler_returns_the_bilinear_input():
    torch.manual_seed(0)
    net = _randomise(NAFNetSR(up_scale=3, **SR_SMALL))
    torch.nn.init.zeros_(net.up[0].weight)
    torch.nn.init.zeros_(net.up[0].bias)
    x = torch.rand(2, 3, 7, 5)
    with torch.no_grad():
        y = net(x)
    assert torch.allclose(y, _bilinear(x, 3), atol=1e-6)
    # the skip really is bilinear without corner alignment, not bicubic or align_corners=True
    assert not torch.allclose(y, F.interpolate(x, scale_factor=3, mode='bicubic', align_corners=False), atol=1e-3)
    assert not torch.allclose(y, F.interpolate(x, scale_factor=3, mode='bilinear', align_corners=True), atol=1e-3)


def test_nafnetsr_is_upsampler_of_body_of_intro_plus_the_bilinear_input():
    torch.manual_seed(0)
    net = _randomise(NAFNetSR(up_scale=2, **SR_SMALL))
    x = torch.rand(1, 3, 9, 6)
    with torch.no_grad():
        feat = net.intro(x)
        for blk in net.body:
            feat = blk(feat)
        expected = F.pixel_shuffle(F.conv2d(feat, net.up[0].weight, net.up[0].bias, padding=1), 2) + _bilinear(x, 2)
        y = net(x)
    assert net.upscale == net.up_scale == 2 and net.up[0].out_channels == 3 * 2 ** 2
    assert torch.allclose(y, expected, atol=1e-6)
    assert not torch.allclose(y, _bilinear(x, 2), atol=1e-3)


@pytest.mark.parametrize('up_scale', [2, 3, 4])
def test_nafnetsr_output_shape_on_odd_sizes(up_scale):
    net = NAFNetSR(up_scale=up_scale, img_channel=1, **SR_SMALL).eval()
    for h, w in [(1, 1), (7, 13), (10, 3)]:
        with torch.no_grad():
            assert net(torch.rand(2, 1, h, w)).shape == (2, 1, h * up_scale, w * up_scale)


def test_nafnetsr_stochastic_depth_skips_or_rescales_whole_blocks_in_training_only():
    torch.manual_seed(0)
    net = _randomise(NAFNetSR(up_scale=2, width=8, num_blks=1, drop_path_rate=0.5))
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        feat = net.intro(x)
        head = lambda f: net.up(f) + _bilinear(x, 2)  # noqa: E731
        kept, dropped = head(feat + (net.body[0](feat) - feat) / 0.5), head(feat)
        plain = head(net.body[0](feat))
        assert torch.allclose(net.eval()(x), plain, atol=1e-6)  # eval: every block, unscaled
        net.train()
        outcomes = []
        for seed in range(12):
            torch.manual_seed(seed)
            y = net(x)
            outcomes.append('kept' if torch.allclose(y, kept, atol=1e-5) else
                            'dropped' if torch.allclose(y, dropped, atol=1e-6) else 'other')
    assert 'other' not in outcomes and {'kept', 'dropped'} <= set(outcomes), outcomes


def test_nafnetsr_loads_the_authors_key_layout_and_names_stereo_checkpoints():
    torch.manual_seed(0)
    src = _randomise(NAFNetSR(up_scale=2, **SR_SMALL))
    keys = set(src.state_dict())
    assert {'intro.weight', 'body.1.sca.1.weight', 'body.0.beta', 'up.0.weight'} <= keys
    theirs = {k.replace('body.0.', 'body.0.module.blk.').replace('body.1.', 'body.1.module.blk.'): v
              for k, v in src.state_dict().items()}
    dst = NAFNetSR(up_scale=2, **SR_SMALL)
    dst.load_state_dict(theirs)
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(dst.eval()(x), src(x))
    stereo = dict(theirs, **{'body.0.module.fusion.beta': torch.zeros(1, 8, 1, 1)})
    with pytest.raises(CheckpointMismatchError, match='stereo NAFSSR model'):
        dst.load_state_dict(stereo)
    with pytest.raises(CheckpointMismatchError, match='up_scale=2, width=8, num_blks=2'):
        NAFNetSR(up_scale=4, **SR_SMALL).load_state_dict(src.state_dict())


def test_nafnetsr_rejects_bad_arguments():
    with pytest.raises(ValueError, match='up_scale must be a positive integer'):
        NAFNetSR(up_scale=0)
    with pytest.raises(ValueError, match=r'drop_path_rate must be in \[0, 1\)'):
        NAFNetSR(drop_path_rate=1.0)


def test_nafnetsr_macs_are_counted_and_its_scale_inferred():
    from ecma_basicsr.analysis.flops import analyze_macs
    from ecma_basicsr.bench.networks import infer_scale

    w, h = 8, 16
    result = analyze_macs(NAFNetSR(up_scale=2, width=w, num_blks=2), (1, 3, h, h))
    # per pixel: intro 3x3; per block conv1 (w->2w), depthwise 3x3 on 2w, conv3, conv4 (w->2w), conv5;
    # SCA's 1x1 conv runs on the pooled 1x1 map; upsampler 3x3 w->3*2^2
    block = (2 * w * w + 2 * w * 9 + w * w + 2 * w * w + w * w) * h * h + w * w
    convs = 3 * w * 9 * h * h + 2 * block + w * 12 * 9 * h * h
    assert result.by_operator['conv'] == convs
    assert result.by_operator['upsample_bilinear2d'] > 0 and result.fft == 0
    assert infer_scale('NAFNetSR', {}) == 4 and infer_scale('NAFNetSR', {'up_scale': 2}) == 2
