"""GRL: attention against dense references, shifted-region masks, position-bias geometry, presets.

The generic contract (odd sizes, backward, published parameter counts) is in test_archs.py via
network_cases; here we check what is specific to GRL's anchored stripe attention.
"""
import glob
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
import yaml

from ecma_basicsr.archs.grl_arch import GRL, AnchorStripeAttention, WindowAttention, relative_position_table
from ecma_basicsr.archs.state_dict_check import CheckpointMismatchError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(embed_dim=16, depths=[4], num_heads_window=2, num_heads_stripe=2, window_size=4, stripe_size=[4, 8],
            anchor_window_down_factor=2)


def _flat_bias(transform):
    """Zero the bias MLP's output layer: the bias becomes the constant 8, which softmax ignores."""
    torch.nn.init.zeros_(transform.cpb_mlp[2].weight)


def _cos_softmax(q, k, scale=10.0):
    return (scale * F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T).softmax(-1)


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
    """Independent statement of shifted-window semantics: same window after the cyclic shift,
    and not neighbours only through the wrap-around (original distance below the window)."""
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


def test_anchor_position_bias_is_geometric():
    # Anchors of a 2x down-sampling sit at the centre of their 2x2 cell: moving the anchor by one
    # cell and the token by two pixels keeps the same relative position, hence the same bias entry.
    size, a_size, down = (4, 8), (2, 4), 2
    table, index = relative_position_table(a_size, size, down, 1)  # anchors are the queries
    a = lambda y, x: y * a_size[1] + x  # noqa: E731
    t = lambda y, x: y * size[1] + x  # noqa: E731
    assert index[a(0, 0), t(0, 0)] == index[a(0, 1), t(0, 2)] == index[a(1, 1), t(2, 2)]
    assert index[a(0, 0), t(0, 0)] != index[a(0, 0), t(0, 1)]
    # offset (+0.5, +0.5) px and (-0.5, -0.5) px are mirror images in the table
    e1, e2 = table[index[a(0, 0), t(0, 0)]], table[index[a(0, 0), t(1, 1)]]
    assert torch.allclose(e1, -e2)
    assert table.abs().max() <= 8 and index.max() < len(table)
    # window-to-window table: (2*ws - 1)^2 unique offsets
    table_w, _ = relative_position_table((4, 4), (4, 4))
    assert len(table_w) == 49


def test_grl_pads_any_size_and_keeps_the_restoration_residual():
    torch.manual_seed(0)
    net = GRL(upscale=1, **TINY).eval()
    # zero the last conv: the restoration output is then exactly the input (global residual)
    torch.nn.init.zeros_(net.conv_last.weight)
    torch.nn.init.zeros_(net.conv_last.bias)
    x = torch.rand(1, 3, 11, 5)
    with torch.no_grad():
        assert torch.allclose(net(x), x, atol=1e-6)


def test_checkpoint_of_another_variant_gives_a_clear_error():
    tiny = GRL(upscale=2, upsampler='pixelshuffledirect', **TINY)
    other = GRL(upscale=2, upsampler='pixelshuffle', **dict(TINY, embed_dim=24))
    with pytest.raises(CheckpointMismatchError) as err:
        other.load_state_dict(tiny.state_dict())
    msg = str(err.value)
    assert 'conv_first.weight: (16, 3, 3, 3) vs (24, 3, 3, 3)' in msg
    assert 'embed_dim=16' in msg and 'pixelshuffledirect' in msg
    assert 'conv_before_upsample.0.weight' in msg  # missing in the checkpoint


def test_presets_and_invalid_options():
    assert GRL(variant='B', upscale=1, task='deblur').cfg['window_size'] == 12
    assert GRL(variant='t', upscale=4).cfg['upsampler'] == 'pixelshuffledirect'
    with pytest.raises(ValueError, match='variant'):
        GRL(variant='XL')
    with pytest.raises(ValueError, match='multiple of the anchor factor'):
        GRL(**dict(TINY, stripe_size=[4, 6]))


GRL_OPTIONS = sorted(glob.glob(osp.join(REPO, 'options', '*', 'GRL_*.yml')))
PUBLISHED = {('T', 4): 0.91e6, ('S', 4): 3.49e6, ('B', 4): 20.20e6, ('B', 1): 19.81e6, ('S', 1): 3.12e6,
             ('T', 1): 0.88e6}


@pytest.mark.parametrize('path', GRL_OPTIONS, ids=[osp.relpath(p, REPO) for p in GRL_OPTIONS])
def test_option_files_build_the_published_network(path):
    opt = yaml.safe_load(open(path))
    net_opt = dict(opt['network_g'])
    assert net_opt.pop('type') == 'GRL'
    with torch.device('meta'):
        net = GRL(**net_opt)
    n = sum(p.numel() for p in net.parameters())
    published = PUBLISHED[(net_opt['variant'], net_opt.get('upscale', 1))]
    assert math.isclose(n, published, rel_tol=0.03), f'{n / 1e6:.2f} M vs {published / 1e6:.2f} M'
    assert opt['scale'] == net_opt.get('upscale', 1)
