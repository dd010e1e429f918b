"""``fuse_for_inference``: ECMA's inference-only rewrites compute the network's function.

The fused copy must equal the network as built within 1e-5 (float32) for every ECMA variant's
layout, every ablation of Tables 8/9 and ECMASR, on odd sizes, on both large-kernel paths; and
fusion must really happen (the fused tree holds the fused module types and none of the blocks
they replace), so the equality test cannot pass through a silently skipped rewrite.
"""
import pytest
import torch

from ecma_basicsr.archs import fuse_for_inference
from ecma_basicsr.archs.ecma_arch import ABLATIONS, CML, ECMA, ECMASR, ECMABlock, Fusion, GatedFFN
from ecma_basicsr.archs.ecma_fuse import (
    LARGE_MAP_PIXELS,
    FusedBlock,
    FusedCML,
    FusedFusion,
    FusedGatedFFN,
    _thin_on_a_large_map,
    group_moments,
    pointwise_conv,
)
from ecma_basicsr.archs.nafnet_arch import NAFNet

TINY = dict(width=8, enc_blocks=(1, 2), kernels=(8, 6))


def _randomise(net, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised gammas would hide the blocks entirely
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.dim() > 1 else 0.5))
    return net


def _assert_fused(fused):
    kinds = {type(m) for m in fused.modules()}
    assert {FusedBlock, FusedCML, FusedGatedFFN} <= kinds
    assert not kinds & {ECMABlock, CML, GatedFFN, Fusion}


def _compare(net, x):
    net.eval()
    with torch.no_grad():
        ref = net(x)
    fused = fuse_for_inference(net)
    _assert_fused(fused)
    with torch.inference_mode():
        out = fused(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())
    return fused


@pytest.mark.parametrize('ablation', sorted(ABLATIONS))
def test_fused_equals_network_for_every_ablation(ablation):
    net = _randomise(ECMA(large_kernel_mode='fft', **dict(ABLATIONS[ablation], **TINY)))  # tiny blocks, not aligned
    fused = _compare(net, torch.rand(2, 3, 21, 30))
    assert any(isinstance(m, FusedFusion) for m in fused.modules())


def test_group_moments_are_groupnorms_statistics_even_far_from_zero():
    """The folded GroupNorm's statistics, over several cache chunks (the last one partial), stay exact for
    groups whose mean is 10^4 times their spread, where E[x^2] - E[x]^2 in float32 would lose every digit."""
    gen = torch.Generator().manual_seed(0)
    per_group = lambda *v: torch.tensor(v).repeat_interleave(4).view(1, 12, 1, 1)  # noqa: E731
    x = torch.randn(2, 12, 37, 53, generator=gen) * per_group(1e-2, 1.0, 3.0) + per_group(100.0, 0.0, -5.0)
    mean, var = group_moments(x, 3, chunk=1000)  # 4 x 37 x 53 = 7844 values per group: 8 chunks
    ref_var, ref_mean = torch.var_mean(x.double().view(2, 3, -1), dim=2, correction=0)
    assert mean.dtype == var.dtype == torch.float32 and mean.shape == var.shape == (2, 3)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-6, atol=0)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-4, atol=0)
    naive = (x.view(2, 3, -1).square().mean(2) - x.view(2, 3, -1).mean(2).square())[:, 0]
    assert ((naive.double() - ref_var[:, 0]).abs() > 0.1 * ref_var[:, 0]).all()  # what the chunks avoid


@pytest.mark.parametrize('mode', ['fft', 'spatial', 'auto'])
def test_fused_equals_network_four_levels_gray(mode):
    net = _randomise(ECMA(width=8, enc_blocks=(1, 1, 1, 2), kernels=(8, 7, 5, 4), in_ch=1, large_kernel_mode=mode), 2)
    _compare(net, torch.rand(1, 1, 27, 19))


@pytest.mark.parametrize('mode', ['fft', 'spatial'])
def test_fused_equals_network_sr(mode):
    net = _randomise(ECMASR(upscale=3, width=8, enc_blocks=(1, 1), kernels=(8, 4), large_kernel_mode=mode), 1)
    _compare(net, torch.rand(2, 3, 13, 9))


def test_fusion_copies_and_leaves_the_network_trainable():
    net = _randomise(ECMA(**TINY))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    fused = fuse_for_inference(net)
    assert fused is not net
    assert any(isinstance(m, CML) for m in net.modules())  # the original is untouched
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    net.train()
    with pytest.raises(RuntimeError, match='inference-only'):
        fused.train()
    assert not any(p.requires_grad for p in fused.parameters())


def test_inplace_and_network_without_rewrites():
    net = _randomise(ECMA(**TINY))
    assert fuse_for_inference(net, inplace=True) is net
    _assert_fused(net)
    plain = NAFNet(width=8, enc_blk_nums=[1], middle_blk_num=1, dec_blk_nums=[1])
    assert fuse_for_inference(plain) is plain


def test_fused_fft_spectrum_is_cached_per_plane():
    net = _randomise(ECMA(large_kernel_mode='fft', **TINY))
    fused = fuse_for_inference(net)
    conv = next(m for m in fused.modules() if type(m).__name__ == 'FusedGroupedConv' and m.mode == 'fft')
    with torch.inference_mode():
        fused(torch.rand(1, 3, 16, 16))
        first = dict(conv._spectra)
        fused(torch.rand(1, 3, 16, 16))
    assert len(first) == 1 and all(conv._spectra[k] is v for k, v in first.items())


def test_cmls_share_one_q_buffer_that_lives_for_one_forward():
    net = _randomise(ECMA(**TINY))
    fused = fuse_for_inference(net)
    cmls = [m for m in fused.modules() if isinstance(m, FusedCML)]
    workspace = cmls[0].workspace
    assert len(cmls) > 1 and all(m.workspace is workspace for m in cmls)
    seen = set()
    for m in cmls:
        m.register_forward_hook(lambda mod, inp, out: seen.add(mod.workspace.buffer.data_ptr()))
    with torch.inference_mode():
        fused(torch.rand(1, 3, 24, 16))
    assert len(seen) == 1  # every level wrote its Q over the same memory
    assert workspace.buffer is None


def test_blocks_add_their_residual_into_their_input_only_where_nothing_reads_it_again():
    """ECMA discards its intro features, so even its first block works in place; ECMASR's long skip
    reads the body's input after the body, so there its first block must leave it alone."""
    seen = {}

    def watch(name):
        return lambda m, args, out: seen.__setitem__(name, args[0].data_ptr() == out.data_ptr())

    for label, net in [('ECMA', ECMA(**TINY)), ('ECMASR', ECMASR(upscale=2, **TINY))]:
        fused = fuse_for_inference(_randomise(net.eval()))
        fused.body.encoders[0][0].register_forward_hook(watch(f'{label} first'))
        fused.body.decoders[-1][-1].register_forward_hook(watch(f'{label} last'))
        x = torch.rand(1, 3, 16, 16)
        kept = x.clone()
        with torch.inference_mode():
            fused(x)
        assert torch.equal(x, kept)
    assert seen == {'ECMA first': True, 'ECMA last': True, 'ECMASR first': False, 'ECMASR last': True}


def test_kernel_spectra_are_kept_per_size_only_up_to_the_cache_limit(monkeypatch):
    """Small spectra are computed once per image size; above the limit each forward recomputes them
    (they would otherwise hold tens of MB per block at 1280x720), with the same output."""
    from ecma_basicsr.archs import ecma_fuse
    from ecma_basicsr.archs.ecma_fuse import FusedGroupedConv
    net = _randomise(ECMA(large_kernel_mode='fft', **TINY).eval())
    x = torch.rand(1, 3, 24, 32)
    outs, kept = [], []
    for limit in (ecma_fuse.SPECTRUM_CACHE_BYTES, 0):
        monkeypatch.setattr(ecma_fuse, 'SPECTRUM_CACHE_BYTES', limit)
        fused = fuse_for_inference(net)
        with torch.inference_mode():
            outs.append(fused(x))
        kept.append(sum(len(m._spectra) for m in fused.modules() if isinstance(m, FusedGroupedConv)))
    assert kept[0] > 0 and kept[1] == 0
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize('c_in,c_out,pixels,gemm', [(12, 4, LARGE_MAP_PIXELS, True), (40, 40, LARGE_MAP_PIXELS, False),
                                                     (12, 4, 64 * 64, False)])
@pytest.mark.parametrize('with_bias', [True, False])
def test_pointwise_conv_is_the_1x1_conv_on_either_path(c_in, c_out, pixels, gemm, with_bias):
    """Thin 1x1 convs on large maps run as GEMMs on the planes (also of a channel slice, batch 2), others in oneDNN."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, c_in + 3, 1, pixels, generator=gen)[:, 2:2 + c_in]  # Q's slots are channel slices like this
    w, b = torch.randn(c_out, c_in, 1, 1, generator=gen), torch.randn(c_out, generator=gen) if with_bias else None
    assert _thin_on_a_large_map(x, w) == gemm
    with torch.inference_mode():
        torch.testing.assert_close(pointwise_conv(x, w, b), torch.nn.functional.conv2d(x, w, b), rtol=0, atol=1e-4)
