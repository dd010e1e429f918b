"""Hi-IR: the L2 permutation, L1/L2 attention against a naive window-by-window reference (with the
padding that any image size needs), and the hierarchical receptive field of Sec. 3.2 / App. E.

The shared contract (odd sizes, backward, parameter counts) is in test_archs.py.
"""
import pytest
import torch

from ecma_basicsr.archs.hiir_arch import HiIR, HiIRAttention, l2_merge, l2_partition


def test_l2_windows_hold_one_token_of_each_patch_of_a_region():
    p, r = 2, 8
    coords = torch.stack(torch.meshgrid(torch.arange(16.), torch.arange(24.), indexing='ij'), -1)[None]  # 1,H,W,2
    windows = l2_partition(coords, p, r)  # (nWin, (r/p)^2, 2)
    assert windows.shape == (16 * 24 // 16, 16, 2)
    for win in windows:
        ys, xs = win[:, 0].long(), win[:, 1].long()
        assert len(set(ys.tolist())) == r // p and len(set(xs.tolist())) == r // p
        assert (ys % p == ys[0] % p).all() and (xs % p == xs[0] % p).all()  # same in-patch position
        assert len({(y // p, x // p) for y, x in zip(ys.tolist(), xs.tolist())}) == (r // p) ** 2  # all patches
        assert (ys // r == ys[0] // r).all() and (xs // r == xs[0] // r).all()  # one region
    assert torch.equal(l2_merge(windows, p, r, (16, 24)), coords)


def attention_reference(attn, x):
    """Window by window over valid tokens only: L1 in p x p patches, then L2 over the tokens p apart
    inside each P x P region, then the projection. ``x``: (1, H, W, C)."""
    _, h, w, c = x.shape
    p, r = attn.patch_size, attn.region_size
    g = r // p
    heads, qk = attn.num_heads, attn.qk_dim

    def attend(qkv, idx, bias):
        q, k, v = qkv[:, :qk], qkv[:, qk:2 * qk], qkv[:, 2 * qk:]
        q, k, v = (t.reshape(len(idx), heads, -1).transpose(0, 1) for t in (q, k, v))
        logits = (q * attn.scale) @ k.transpose(-2, -1) + bias[:, idx][:, :, idx]
        return (logits.softmax(-1) @ v).transpose(0, 1).reshape(len(idx), -1)

    def run(feat, qkv_layer, bias, groups):
        out = torch.zeros(h, w, c)
        qkv = qkv_layer(feat)
        for positions in groups:
            valid = [(i, yx) for i, yx in enumerate(positions) if yx[0] < h and yx[1] < w]
            if not valid:  # a window made only of padding has no output in the image
                continue
            idx = [i for i, _ in valid]
            ys, xs = [yx[0] for _, yx in valid], [yx[1] for _, yx in valid]
            out[ys, xs] = attend(qkv[ys, xs], idx, bias)
        return out

    hp, wp = -(-h // r) * r, -(-w // r) * r
    patches = [[(py + i, px + j) for i in range(p) for j in range(p)]
               for py in range(0, hp, p) for px in range(0, wp, p)]
    y1 = run(x[0], attn.qkv1, attn.bias1((p, p), x), patches)
    windows = [[(ry + i * p + a, rx + j * p + b) for i in range(g) for j in range(g)]
               for ry in range(0, hp, r) for rx in range(0, wp, r) for a in range(p) for b in range(p)]
    y2 = run(y1, attn.qkv2, attn.bias2((g, g), x), windows)
    return attn.proj(y2)[None]


@pytest.mark.parametrize('hw', [(8, 8), (5, 7), (9, 3)])
def test_attention_matches_window_by_window_reference(hw):
    torch.manual_seed(0)
    attn = HiIRAttention(8, num_heads=2, patch_size=2, region_size=4)
    x = torch.randn(1, *hw, 8)
    with torch.no_grad():
        assert torch.allclose(attn(x), attention_reference(attn, x), atol=1e-5)


def test_one_layer_reaches_exactly_its_region():
    """L1 spreads a pixel over its patch, L2 over the same in-patch position of every patch in the
    region: one attention covers the P x P region and nothing beyond (App. E: bounded distance)."""
    torch.manual_seed(0)
    attn = HiIRAttention(8, num_heads=2, patch_size=2, region_size=4)
    x = torch.randn(1, 8, 12, 8)
    x2 = x.clone()
    x2[0, 5, 6] += 1.0  # inside the region rows 4-7, columns 4-7
    with torch.no_grad():
        changed = (attn(x2) - attn(x)).abs().sum(-1)[0] > 1e-6
    expected = torch.zeros(8, 12, dtype=torch.bool)
    expected[4:8, 4:8] = True
    assert torch.equal(changed, expected)


def test_columnar_for_sr_and_u_shape_for_restoration():
    sr = HiIR(upscale=4, embed_dim=12, depths=[1], num_heads=2, patch_size=2, region_size=4)
    dn = HiIR(upscale=1, embed_dim=8, depths=[1, 1, 1, 1], num_heads=2, patch_size=2, region_size=4)
    assert sr.columnar and not dn.columnar
    assert len(dn.down_stages) == 3 and len(dn.up_stages) == 3  # Tab. 17: 3 down, latent, 3 up
    assert HiIR(upscale=4).cfg['depths'] == [6] * 6  # Hi-IR-B columnar: 6 stages x 6 layers
    with pytest.raises(ValueError, match='variant'):
        HiIR(upscale=4, variant='XL')
