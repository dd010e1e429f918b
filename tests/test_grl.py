"""GRL: attention against dense references, the authors' position tables / shifts / padding, their
constructor arguments and checkpoint layout, presets and option files.

The generic contract (odd sizes, backward, published parameter counts) is in test_archs.py via
network_cases; numerical equality with the authors' code on every golden fixture is in
test_golden.py. Here we check what is specific to GRL.
"""
import glob
import logging
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
import yaml
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import SHARED

from ecma_basicsr.archs.grl_arch import (
    GRL,
    PRESETS,
    AnchorStripeAttention,
    WindowAttention,
    anchor_coords_table,
    anchor_position_index,
    map_authors_state_dict,
    shift_mask,
    stripe_geometry,
)
from ecma_basicsr.archs.state_dict_check import CheckpointMismatchError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(embed_dim=16, depths=[4], num_heads_window=2, num_heads_stripe=2, window_size=4, stripe_size=[4, 8],
            anchor_window_down_factor=2)
# The authors' GRL-T SR x4 option (config/model/grl/grl_tiny.yaml with config/experiment/sr/grl/grl_p256.yaml),
# including the keys their class accepts and ignores.
AUTHORS_TINY_SR = dict(
    name='grl_tiny', upscale=4, in_channels=3, embed_dim=64, img_range=1.0, img_size=256,
    upsampler='pixelshuffledirect', depths=[4, 4, 4, 4], num_heads_window=[2, 2, 2, 2], num_heads_stripe=[2, 2, 2, 2],
    window_size=32, stripe_size=[64, 64], stripe_groups=[None, None], stripe_shift=True, mlp_ratio=2,
    qkv_proj_type='linear', anchor_proj_type='avgpool', anchor_one_stage=True, anchor_window_down_factor=4,
    out_proj_type='linear', conv_type='1conv', init_method='n', fairscale_checkpoint=False, offload_to_cpu=False,
    double_window=False, stripe_square=False, separable_conv_act=True, local_connection=False, use_buffer=True,
    use_efficient_buffer=True, euclidean_dist=False)
# The 13 non-learned buffers of the authors' GRL (their convert_checkpoint removes them).
AUTHORS_BUFFERS = ('table_w', 'table_sh', 'table_sv', 'index_w', 'index_sh_a2w', 'index_sh_w2a', 'index_sv_a2w',
                   'index_sv_w2a', 'mask_w', 'mask_sh_a2w', 'mask_sh_w2a', 'mask_sv_a2w', 'mask_sv_w2a')


def _flat_bias(transform):
    """Zero the bias MLP's output layer: the bias becomes the constant 8, which softmax ignores."""
    torch.nn.init.zeros_(transform.cpb_mlp[2].weight)


def _cos_softmax(q, k, scale=10.0):
    return (scale * F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T).softmax(-1)


def _to_authors(state_dict, prefix=''):
    """Our state dict in the authors' key layout (their module names for qkv, anchor, local branch, tail)."""
    out = {}
    for k, v in state_dict.items():
        k = k.replace('.attn.qkv.', '.attn.qkv.body.').replace('.attn.anchor.', '.attn.anchor.body.0.reduction.')
        k = k.replace('.conv.body.', '.conv.cab.')
        if k.startswith('upsample.'):
            k = 'upsample.up.' + k[len('upsample.'):]
        out[prefix + k] = v
    return out


def _randomized(net):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return net


# ------------------------------------------------------------------------------------------------
# Attention
# ------------------------------------------------------------------------------------------------
def test_anchor_stripe_attention_matches_dense_reference():
    torch.manual_seed(0)
    heads, c, (sh, sw), down = 2, 8, (4, 8), 2
    attn = AnchorStripeAttention(heads, (sh, sw), down, shift=False)
    _flat_bias(attn.attn_transform1)
    _flat_bias(attn.attn_transform2)
    h, w = 2 * sh, 2 * sw
    qkv = torch.randn(1, h, w, 3 * c)
    anchor = torch.randn(1, h // down, w // down, c)
    out = attn(qkv, anchor)

    d = c // heads
    ref = torch.zeros(1, h, w, c)
    for i in range(h // sh):
        for j in range(w // sw):
            tok = qkv[0, i * sh:(i + 1) * sh, j * sw:(j + 1) * sw].reshape(-1, 3 * c)
            anc = anchor[0, i * sh // down:(i + 1) * sh // down, j * sw // down:(j + 1) * sw // down].reshape(-1, c)
            for hd in range(heads):
                sl = slice(hd * d, (hd + 1) * d)
                q, k, v = tok[:, sl], tok[:, c:][:, sl], tok[:, 2 * c:][:, sl]
                a = anc[:, sl]
                z = _cos_softmax(a, k) @ v  # anchors gather the stripe
                y = _cos_softmax(q, a) @ z  # tokens read the anchors
                ref[0, i * sh:(i + 1) * sh, j * sw:(j + 1) * sw, sl] = y.view(sh, sw, d)
    assert torch.allclose(out, ref, atol=1e-5)


def test_window_attention_matches_dense_reference():
    torch.manual_seed(0)
    heads, c, ws = 2, 8, 4
    attn = WindowAttention(heads, ws, shift=False)
    _flat_bias(attn.attn_transform)
    qkv = torch.randn(1, 8, 12, 3 * c)
    out = attn(qkv)
    d = c // heads
    ref = torch.zeros(1, 8, 12, c)
    for i in range(2):
        for j in range(3):
            tok = qkv[0, i * ws:(i + 1) * ws, j * ws:(j + 1) * ws].reshape(-1, 3 * c)
            for hd in range(heads):
                sl = slice(hd * d, (hd + 1) * d)
                y = _cos_softmax(tok[:, sl], tok[:, c:][:, sl]) @ tok[:, 2 * c:][:, sl]
                ref[0, i * ws:(i + 1) * ws, j * ws:(j + 1) * ws, sl] = y.view(ws, ws, d)
    assert torch.allclose(out, ref, atol=1e-5)


def _same_shifted_region(p, q, size, shift, hw):
    """Independent statement of shifted-window semantics when the image holds several windows per
    axis: same window after the cyclic shift, and not neighbours only through the wrap-around."""
    for a, b, s, sh, n in zip(p, q, size, shift, hw):
        if ((a - sh) % n) // s != ((b - sh) % n) // s or abs(a - b) >= s:
            return False
    return True


def _dependencies(module, qkv, extra, p):
    qkv = qkv.clone().requires_grad_(True)
    out = module(qkv, *extra)
    out[0, p[0], p[1]].sum().backward()
    g = qkv.grad[0].abs().sum(-1)
    return {(int(y), int(x)) for y, x in (g > 1e-12).nonzero()}


@pytest.mark.parametrize('kind', ['window', 'stripe'])
def test_shifted_attention_only_mixes_tokens_of_one_region(kind):
    torch.manual_seed(0)
    h, w, c = 8, 16, 8
    if kind == 'window':
        module, size, extra = WindowAttention(2, 4, shift=True), (4, 4), ()
    else:
        module, size = AnchorStripeAttention(2, (4, 8), 2, shift=True), (4, 8)
        extra = (torch.randn(1, h // 2, w // 2, c),)
    shift = (size[0] // 2, size[1] // 2)
    qkv = torch.randn(1, h, w, 3 * c)
    for p in [(0, 0), (7, 15), (1, 6), (6, 2), (3, 9)]:
        expected = {(y, x) for y in range(h) for x in range(w) if _same_shifted_region(p, (y, x), size, shift, (h, w))}
        assert _dependencies(module, qkv, extra, p) == expected, p


@pytest.mark.parametrize('kind', ['window', 'stripe'])
def test_shift_applies_when_the_image_is_a_single_window(kind):
    # The authors roll and mask even when the padded image is one window / stripe: the rolled image
    # falls into Swin's regions [0, s - shift) and [s - shift, s) per axis, i.e. the quadrants of the
    # original image split at the shift.
    torch.manual_seed(0)
    c = 8
    if kind == 'window':
        module, (h, w), extra = WindowAttention(2, 4, shift=True), (4, 4), ()
    else:
        module, (h, w) = AnchorStripeAttention(2, (4, 8), 2, shift=True), (4, 8)
        extra = (torch.randn(1, h // 2, w // 2, c),)
    qkv = torch.randn(1, h, w, 3 * c)
    for p in [(0, 0), (1, 2), (3, w - 1), (2, w - 3)]:
        expected = {(y, x) for y in range(h) for x in range(w) if y // (h // 2) == p[0] // (h // 2)
                    and x // (w // 2) == p[1] // (w // 2)}
        assert _dependencies(module, qkv, extra, p) == expected, p


# ------------------------------------------------------------------------------------------------
# The authors' position tables, stripe geometry and padding
# ------------------------------------------------------------------------------------------------
def test_anchor_table_and_index_follow_the_authors_grid_offsets():
    size, down = (4, 4), 2  # anchors 2 x 2
    table = anchor_coords_table(size, down)
    # offsets -2..2 per axis (centred by (4 - 2) // 2 = 1), divided by 2, scaled to 8, log-spaced
    axis = torch.tensor([-8.0, -4.0, 0.0, 4.0, 8.0])
    axis = torch.sign(axis) * torch.log2(axis.abs() + 1) / 3
    assert table.shape == (25, 2)
    assert torch.equal(table.view(5, 5, 2)[:, 0, 0], axis) and torch.equal(table.view(5, 5, 2)[0, :, 1], axis)

    w2a = anchor_position_index(size, down, anchor_query=False)  # tokens query anchors
    a2w = anchor_position_index(size, down, anchor_query=True)  # anchors query tokens
    assert w2a.shape == (16, 4) and a2w.shape == (4, 16)
    tok = lambda y, x: y * 4 + x  # noqa: E731
    anc = lambda i, j: i * 2 + j  # noqa: E731
    assert w2a[tok(0, 0), anc(0, 0)] == 6 and w2a[tok(3, 3), anc(0, 0)] == 24 and w2a[tok(0, 0), anc(1, 1)] == 0
    assert a2w[anc(1, 1), tok(0, 0)] == 24 and a2w[anc(0, 0), tok(3, 3)] == 0
    # Grid indices, not pixel geometry: anchor (0, 1) pools pixels 2-3, yet it pairs with token (0, 1)
    # exactly like anchor (0, 0) with token (0, 0).
    assert w2a[tok(0, 1), anc(0, 1)] == w2a[tok(0, 0), anc(0, 0)]


def test_window_table_is_the_swin_v2_table():
    ws = 4
    table = anchor_coords_table((ws, ws), 1).view(2 * ws - 1, 2 * ws - 1, 2)
    axis = torch.arange(-(ws - 1), ws, dtype=torch.float32) / (ws - 1) * 8
    axis = torch.sign(axis) * torch.log2(axis.abs() + 1) / 3
    assert torch.equal(table[:, 0, 0], axis)
    index = anchor_position_index((ws, ws), 1)
    assert index.shape == (16, 16) and index[0, 0] == (ws - 1) * (2 * ws - 1) + ws - 1 and index.max() == 48


def test_pretrained_size_changes_the_normalisation():
    # offsets up to 7 divided by 15 (the largest offset of a 16 window) instead of by 7
    plain, pre = anchor_coords_table((8, 8), 1), anchor_coords_table((8, 8), 1, (16, 16))
    assert torch.isclose(plain.max(), torch.log2(torch.tensor(9.0)) / 3)
    assert torch.isclose(pre.max(), torch.log2(torch.tensor(7 / 15 * 8 + 1)) / 3)


def test_shift_masks_follow_the_authors_region_labels():
    mask = shift_mask((8, 8), (4, 4), (2, 2))  # Swin: regions [0, 4), [4, 6), [6, 8) of the rolled image
    assert mask.shape == (4, 16, 16)
    assert not mask[0].any() and int((mask[3] == 0).sum()) == 4 * 4 + 4 * 4 + 4 * 4 + 4 * 4
    # Anchors pooled by 4 from a shift of 2: the anchor shift rounds to 0, and the authors' slices then
    # put every anchor in the last region; only the tokens of that region stay visible to them.
    a2w = shift_mask((8, 8), (4, 4), (2, 2), down=4, anchor_query=True)
    assert a2w.shape == (4, 1, 16)
    assert bool((a2w[0] == -100).all()) and int((a2w[3] == 0).sum()) == 4


def test_stripe_groups_geometry():
    assert stripe_geometry((8, None), (None, 4), (32, 48)) == ((8, 12), (4, 6))
    assert stripe_geometry((None, 8), (1, None), (32, 48)) == ((32, 8), (0, 4))  # one group: no shift


def test_padding_multiple_is_the_largest_size_and_reflection_falls_back_to_zeros():
    net = GRL(upscale=1, **dict(TINY, window_size=8, stripe_size=[16, 32]))
    assert net.pad_size == 32
    x = torch.rand(1, 3, 20, 30)
    assert torch.equal(net.pad(x), F.pad(x, (0, 2, 0, 12), mode='reflect'))
    for h, w in [(6, 6), (3, 30), (30, 3)]:  # a pad as large as a side: zeros on both axes
        x = torch.rand(1, 3, h, w)
        assert torch.equal(net.pad(x), F.pad(x, (0, (-w) % 32, 0, (-h) % 32)))


def test_grl_pads_any_size_and_keeps_the_restoration_residual():
    torch.manual_seed(0)
    net = GRL(upscale=1, **TINY).eval()
    # zero the last conv: the restoration output is then exactly the input (global residual)
    torch.nn.init.zeros_(net.conv_last.weight)
    torch.nn.init.zeros_(net.conv_last.bias)
    x = torch.rand(1, 3, 11, 5)
    with torch.no_grad():
        assert torch.allclose(net(x), x, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# The authors' constructor arguments
# ------------------------------------------------------------------------------------------------
def test_authors_option_builds_the_published_network():
    with torch.device('meta'):
        theirs = ARCH_REGISTRY.get('GRL')(**AUTHORS_TINY_SR)
        ours = GRL(variant='T', upscale=4)
    assert theirs.cfg == ours.cfg
    assert theirs.in_channels == 3 and theirs.upscale == 4
    n = sum(p.numel() for p in theirs.parameters())
    assert n == sum(p.numel() for p in ours.parameters()) and round(n / 1e6, 2) == 0.91


def test_authors_stripe_groups_config_runs():
    # config/model/grl/*.yaml without an experiment: stripes 8 high and a quarter of the width wide.
    net = GRL(upscale=1, embed_dim=16, depths=[4], num_heads_window=[2], num_heads_stripe=[2], window_size=8,
              stripe_size=[8, None], stripe_groups=[None, 4], anchor_window_down_factor=4).eval()
    assert net.pad_size == 16
    with torch.no_grad():
        for hw in [(32, 32), (20, 37)]:
            assert net(torch.rand(1, 3, *hw)).shape == (1, 3, *hw)


def test_authors_options_that_change_the_network():
    kw = dict(TINY, upscale=1)
    assert GRL(**kw, init_method='r').layers[0].blocks[0].res_scale == 0.1
    net = GRL(**kw, init_method='l')
    assert all(not m.weight.detach().any() for m in net.layers[0].modules() if isinstance(m, torch.nn.LayerNorm))
    assert GRL(**kw, conv_type='3conv').layers[0].conv[0].out_channels == 4
    assert GRL(**kw, conv_type='linear').conv_after_body.weight.shape == (16, 16)
    assert GRL(**kw, conv_type='1conv1x1').conv_after_body.kernel_size == (1, 1)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        a, b = _randomized(GRL(**kw)).eval(), _randomized(GRL(**kw, euclidean_dist=True)).eval()
        assert not torch.allclose(a(x), b(x))
        c = _randomized(GRL(**kw, anchor_proj_type='maxpool')).eval()
        assert not torch.allclose(a(x), c(x))
    sr = GRL(**dict(TINY, upscale=4, upsampler='nearest+conv')).eval()
    with torch.no_grad():
        assert sr(torch.rand(1, 3, 5, 7)).shape == (1, 3, 20, 28)


def test_fairscale_checkpoint_recomputes_without_changing_gradients():
    kw = dict(TINY, upscale=1, drop_path_rate=0.0)
    plain, ckpt = _randomized(GRL(**kw)), _randomized(GRL(**kw, fairscale_checkpoint=True, offload_to_cpu=True))
    x = torch.rand(1, 3, 8, 8)
    for net in (plain, ckpt):
        net.train()
        net(x).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


@pytest.mark.parametrize('kwargs, match', [
    (dict(qkv_proj_type='separable_conv'), 'qkv_proj_type'),
    (dict(anchor_proj_type='conv2d'), 'anchor_proj_type'),
    (dict(anchor_one_stage=False), 'anchor_one_stage'),
    (dict(conv_type='2conv'), 'conv_type'),
    (dict(init_method='normal'), 'init_method'),
    (dict(stripe_size=[4, 6]), 'must divide the padding multiple'),
    (dict(stripe_size=[3, 12], window_size=3), 'multiple of anchor_window_down_factor'),
    (dict(num_heads_window=[2, 2]), 'num_heads_window has 2 entries'),
    (dict(upsampler='nearest+conv', upscale=2), 'x4 only'),
])
def test_unsupported_authors_options_are_refused_clearly(kwargs, match):
    args = dict(TINY, upscale=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GRL(**args)


def test_unknown_argument_is_refused():
    with pytest.raises(TypeError, match='stripe_sise'):
        GRL(stripe_sise=[8, 8])


# ------------------------------------------------------------------------------------------------
# The authors' checkpoints
# ------------------------------------------------------------------------------------------------
def _tiny_pair(**kw):
    """A tiny GRL-B-like network and its weights in the authors' layout (with their buffers)."""
    kw = dict(TINY, upscale=2, upsampler='pixelshuffle', local_connection=True, embed_dim=36, num_heads_window=3,
              num_heads_stripe=3, **kw)
    src = _randomized(GRL(**kw))
    theirs = _to_authors(src.state_dict())
    theirs.update({name: torch.zeros(1) for name in AUTHORS_BUFFERS})
    return kw, src, theirs


def _capture_basicsr_log():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger('basicsr')
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return records, lambda: (logger.removeHandler(handler), logger.setLevel(old_level))


@pytest.mark.parametrize('wrap', ['plain', 'lightning', 'module', 'gan'])
def test_authors_state_dict_loads_with_plain_load_state_dict(wrap):
    kw, src, theirs = _tiny_pair()
    if wrap == 'lightning':  # their engine: model.<key> plus validation records
        theirs = {'model.' + k: v for k, v in theirs.items()}
        theirs.update(current_val_metric=torch.zeros(2), best_val_metric=torch.zeros(2), best_iter=torch.zeros(1),
                      **{'criterion.vgg.weight': torch.zeros(3)})
    elif wrap == 'module':
        theirs = {'module.' + k: v for k, v in theirs.items()}
    elif wrap == 'gan':  # bsr_grl_base: generator under model_g., discriminator and loss networks beside it
        theirs = {'model_g.' + k: v for k, v in theirs.items()}
        theirs.update({'model_d.conv0.weight': torch.zeros(3), 'loss.vgg.weight': torch.zeros(3)})
    dst = GRL(**kw)
    records, restore = _capture_basicsr_log()
    try:
        dst.load_state_dict(theirs)  # strict
    finally:
        restore()
    for (name, p), q in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(p, q), name
    notes = [r.getMessage() for r in records if 'authors' in r.getMessage()]
    assert len(notes) == 1 and 'renamed' in notes[0]


def test_our_layout_loads_without_a_mapping_note():
    kw, src, _ = _tiny_pair()
    records, restore = _capture_basicsr_log()
    try:
        GRL(**kw).load_state_dict(src.state_dict())
    finally:
        restore()
    assert not records
    assert map_authors_state_dict(src.state_dict())[1] is None


def test_partial_authors_checkpoint_is_refused():
    kw, _, theirs = _tiny_pair()
    partial = {k: v for k, v in theirs.items() if '.blocks.3.' not in k}
    with pytest.raises(CheckpointMismatchError) as err:
        GRL(**kw).load_state_dict(partial)
    assert 'layers.0.blocks.3.attn.qkv.weight' in str(err.value)  # named in our layout
    other = GRL(**dict(kw, embed_dim=24))
    with pytest.raises(CheckpointMismatchError, match=r'conv_first.weight: \(36, 3, 3, 3\) vs \(24, 3, 3, 3\)'):
        other.load_state_dict(theirs)


@pytest.mark.parametrize('param_key, wrapper', [('state_dict', 'lightning'), ('params', 'plain'),
                                                ('params_ema', 'params_only')])
def test_basicsr_load_network_takes_the_authors_file(tmp_path, param_key, wrapper):
    from basicsr.models.base_model import BaseModel
    kw, src, theirs = _tiny_pair()
    if wrapper == 'lightning':
        content = {'state_dict': {'model.' + k: v for k, v in theirs.items()}, 'epoch': 3}
    elif wrapper == 'plain':
        content = {'params': theirs}
    else:  # no params_ema in the file: BasicSR falls back to params
        content = {'params': theirs}
    path = str(tmp_path / 'grl.pth')
    torch.save(content, path)
    dst = GRL(**kw)
    model = BaseModel.__new__(BaseModel)
    model.load_network(dst, path, strict=True, param_key=param_key)
    assert all(torch.equal(p, q) for p, q in zip(src.state_dict().values(), dst.state_dict().values()))


def test_wrapped_file_passed_as_state_dict_gets_a_hint():
    kw, _, theirs = _tiny_pair()
    with pytest.raises(CheckpointMismatchError, match='param_key_g: state_dict'):
        GRL(**kw).load_state_dict({'state_dict': {'model.' + k: v for k, v in theirs.items()}})


def _grl_fixtures():
    return sorted(glob.glob(osp.join(SHARED, 'golden', 'grl_*.pt')))


@pytest.mark.parametrize('path', _grl_fixtures() or [None], ids=lambda p: osp.basename(p) if p else 'no-fixtures')
def test_authors_fixture_keys_map_exactly_to_ours(path):
    if path is None:
        pytest.skip(f'{SHARED}/golden not found (the golden fixtures live in ../shared beside the checkout)')
    fixture = torch.load(path, map_location='cpu', weights_only=True)
    with torch.device('meta'):
        net = ARCH_REGISTRY.get('GRL')(**fixture['config'])
    mapped, note = map_authors_state_dict(fixture['state_dict'])
    assert note is not None and map_authors_state_dict(mapped)[1] is None  # mapping twice changes nothing
    assert set(mapped) == set(net.state_dict())
    assert all(tuple(v.shape) == tuple(net.state_dict()[k].shape) for k, v in mapped.items())


# ------------------------------------------------------------------------------------------------
# Presets and option files
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', list(PRESETS))
def test_presets_have_the_published_parameter_counts(name):
    preset = PRESETS[name]
    with torch.device('meta'):
        net = ARCH_REGISTRY.get(preset.arch)(**preset.kwargs)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == round(preset.params / 1e6, 2)
    assert net.upscale == preset.scale
    with torch.device('meta'):
        by_name = GRL(variant=name)
    assert by_name.cfg == net.cfg


def test_preset_geometry_follows_the_authors_test_commands():
    with torch.device('meta'):
        cfg = {name: GRL(**p.kwargs).cfg for name, p in PRESETS.items()}
    assert cfg['GRL-T-SRx4']['anchor_window_down_factor'] == cfg['GRL-S-SRx4']['anchor_window_down_factor'] == 4
    assert cfg['GRL-B-SRx4']['anchor_window_down_factor'] == 2 and cfg['GRL-B-SRx4']['window_size'] == 32
    assert (cfg['GRL-B-Denoise']['anchor_window_down_factor'], cfg['GRL-B-Denoise']['window_size']) == (2, 32)
    assert (cfg['GRL-T-Denoise']['anchor_window_down_factor'], cfg['GRL-T-Denoise']['window_size']) == (4, 16)
    assert cfg['GRL-B-Deblur']['window_size'] == 12 and cfg['GRL-B-Deblur']['stripe_size'] == [48, 96]
    assert cfg['GRL-B-Deblur']['anchor_window_down_factor'] == 4


def test_invalid_variant_and_task():
    with pytest.raises(ValueError, match='GRL variant'):
        GRL(variant='XL')
    with pytest.raises(ValueError, match='GRL task'):
        GRL(variant='T', task='inpaint')


def test_checkpoint_of_another_variant_gives_a_clear_error():
    tiny = GRL(upscale=2, upsampler='pixelshuffledirect', **TINY)
    other = GRL(upscale=2, upsampler='pixelshuffle', **dict(TINY, embed_dim=24))
    with pytest.raises(CheckpointMismatchError) as err:
        other.load_state_dict(tiny.state_dict())
    msg = str(err.value)
    assert 'conv_first.weight: (16, 3, 3, 3) vs (24, 3, 3, 3)' in msg
    assert 'embed_dim=16' in msg and 'pixelshuffledirect' in msg
    assert 'conv_before_upsample.0.weight' in msg  # missing in the checkpoint


GRL_OPTIONS = sorted(glob.glob(osp.join(REPO, 'options', '*', 'GRL_*.yml')))


@pytest.mark.parametrize('path', GRL_OPTIONS, ids=[osp.relpath(p, REPO) for p in GRL_OPTIONS])
def test_option_files_build_the_published_network(path):
    opt = yaml.safe_load(open(path))
    net_opt = dict(opt['network_g'])
    assert net_opt.pop('type') == 'GRL'
    upscale = net_opt.get('upscale', 1)
    name = f"GRL-{net_opt['variant']}-{'SRx4' if upscale > 1 else net_opt['task'].capitalize()}"
    with torch.device('meta'):
        net = GRL(**net_opt)
        preset = GRL(**PRESETS[name].kwargs)
    assert net.cfg == preset.cfg  # same architecture and the authors' geometry for that model
    n = sum(p.numel() for p in net.parameters())
    assert math.isclose(n, PRESETS[name].params, rel_tol=0.005), f'{n / 1e6:.2f} M'
    assert opt['scale'] == upscale
    pretrain = opt.get('path', {}).get('pretrain_network_g')
    if pretrain:  # test options point at the authors' released Lightning checkpoint
        assert pretrain.endswith('.ckpt') and opt['path']['param_key_g'] == 'state_dict'
