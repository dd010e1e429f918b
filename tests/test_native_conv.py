"""The native LAM kernel (``archs/native/lam_conv.c``) and its build, cache and fallback.

The kernel must equal PyTorch's grouped conv of the cascade context (any batch, odd and tiny
sizes, every kernel size it accepts, cascade on and off, each combine), write only its slots of
a larger map, give the same result on one thread and several, and build once per cache. Without
a compiler the fused network falls back to PyTorch ops with one warning and the same output.
"""
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ecma_basicsr.archs import ecma_fuse, fuse_for_inference, native_conv
from ecma_basicsr.archs.ecma_arch import ECMA, cascade_context
from ecma_basicsr.archs.fft_conv import spatial_grouped_conv

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get('CC') or 'cc') is None,
                                    reason='no C compiler (cc or $CC): the native kernel cannot be built')


def _reference(raw, weight, bias, prev):
    ctx = cascade_context(prev, raw) if prev is not None else raw
    if weight.shape[1] == 1:
        return F.conv2d(ctx, weight, bias, padding=weight.shape[-1] // 2, groups=weight.shape[0])
    return spatial_grouped_conv(ctx, weight, bias)


def _maps(b, c_out, r, cascade, k, h, w, seed=0):
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(b, c_out * r, h, w, generator=gen)
    prev = torch.randn(b, c_out, h, w, generator=gen) if cascade else None
    weight = torch.randn(c_out, r + cascade, k, k, generator=gen) * 0.3
    return raw, prev, weight, torch.randn(c_out, generator=gen)


@needs_compiler
@pytest.mark.parametrize('k', native_conv.KERNEL_SIZES)
@pytest.mark.parametrize('r,cascade', [(1, False), (3, False), (2, True), (3, True)])
@pytest.mark.parametrize('size', [(2, 11, 17), (1, 2, 3), (1, 1, 40)])
def test_grouped_conv_equals_pytorchs_grouped_conv_of_the_cascade_context(k, r, cascade, size):
    b, h, w = size
    raw, prev, weight, bias = _maps(b, 4, r, cascade, k, h, w)
    out = native_conv.grouped_conv(raw, weight, bias, torch.empty(b, 4, h, w), prev=prev)
    torch.testing.assert_close(out, _reference(raw, weight, bias, prev), rtol=0, atol=1e-5)


@needs_compiler
@pytest.mark.parametrize('combine', ['product', 'add'])
def test_writes_its_slots_of_a_larger_map_and_nothing_else(combine):
    """Q's layout: the conv goes into one channel slice, the combined branch into another, the rest is untouched."""
    raw, prev, weight, bias = _maps(2, 3, 1, False, 3, 9, 14)
    other = torch.randn(2, 3, 9, 14)
    q = torch.full((2, 12, 9, 14), 7.0)
    native_conv.grouped_conv(raw, weight, None, q[:, 6:9], other=other, combined=q[:, 0:3], combine=combine)
    a = _reference(raw, weight, None, None)
    torch.testing.assert_close(q[:, 6:9], a, rtol=0, atol=1e-5)
    torch.testing.assert_close(q[:, 0:3], a * other if combine == 'product' else a + other, rtol=0, atol=1e-5)
    assert (q[:, 3:6] == 7).all() and (q[:, 9:] == 7).all()


@needs_compiler
def test_several_threads_give_the_one_thread_result_bit_for_bit(monkeypatch):
    raw, prev, weight, bias = _maps(1, 8, 2, True, 5, 64, 300)
    monkeypatch.setattr(native_conv, 'MIN_PIXELS_PER_THREAD', 1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native_conv.grouped_conv(raw, weight, bias, torch.empty(1, 8, 64, 300), prev=prev)
        moments_one = native_conv.group_moments(raw, 4)
        torch.set_num_threads(2)
        two = native_conv.grouped_conv(raw, weight, bias, torch.empty(1, 8, 64, 300), prev=prev)
        moments_two = native_conv.group_moments(raw, 4)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    assert all(torch.equal(a, b) for a, b in zip(moments_one, moments_two))
    torch.testing.assert_close(moments_one[0], raw.view(4, -1).mean(1, keepdim=True).t(), rtol=0, atol=1e-5)


@needs_compiler
def test_supports_only_what_the_kernel_computes():
    raw, prev, weight, bias = _maps(1, 2, 1, False, 3, 5, 5)
    assert native_conv.supports(weight, raw)
    assert not native_conv.supports(torch.randn(2, 1, 9, 9), raw)  # no unrolled kernel: PyTorch is faster
    assert not native_conv.supports(weight.double(), raw.double())
    assert not native_conv.supports(weight, raw.transpose(2, 3))  # planes not contiguous
    assert not native_conv.supports(weight, raw.clone().requires_grad_())
    with FlopCounterMode(display=False):  # a counter (or tracer, compiler, exporter) must see PyTorch ops
        assert not native_conv.supports(weight, raw)
    with pytest.raises(ValueError, match='unsupported'):
        native_conv.grouped_conv(raw[:, :1], weight, bias, torch.empty(1, 2, 5, 5))


@needs_compiler
def test_build_is_cached_per_source_and_compiler_and_never_left_half_written(tmp_path, monkeypatch):
    monkeypatch.setenv('ECMA_BASICSR_CACHE', str(tmp_path))
    path = native_conv.build()
    assert os.path.dirname(path) == os.path.join(str(tmp_path), 'native')
    stamp = os.stat(path).st_mtime_ns
    assert native_conv.build() == path and os.stat(path).st_mtime_ns == stamp  # no second compile
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temporary left behind
    broken = tmp_path / 'broken.c'
    broken.write_text('this is not C\n')
    monkeypatch.setattr(native_conv, 'SOURCE', str(broken))
    with pytest.raises(RuntimeError, match='failed'):
        native_conv.build()
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


def _tiny_ecma(enc_blocks, large_kernel_mode, size):
    """A width-8 ECMA with random weights (its zero-initialised gammas would hide the blocks), an input
    and the unfused network's output."""
    net = ECMA(width=8, enc_blocks=enc_blocks, kernels=(8, 6), large_kernel_mode=large_kernel_mode).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        return net, x, net(x)


def test_without_a_compiler_the_fused_network_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv('ECMA_BASICSR_CACHE', str(tmp_path))  # nothing cached there
    monkeypatch.setenv('CC', str(tmp_path / 'no-such-cc'))
    monkeypatch.setattr(native_conv, '_state', {'lib': None, 'error': None, 'pool': None})
    net, x, ref = _tiny_ecma((1, 1), 'spatial', (20, 28))
    fused = fuse_for_inference(net)
    with pytest.warns(RuntimeWarning, match='no C compiler.*no-such-cc') as caught, torch.inference_mode():
        out = fused(x)
        fused(x)
    assert len([w for w in caught if 'native LAM kernel' in str(w.message)]) == 1
    assert native_conv.status().startswith('pytorch (no C compiler')
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5 * max(1.0, ref.abs().max().item()))


def test_the_switch_turns_the_kernel_off_without_a_warning(monkeypatch, recwarn):
    monkeypatch.setenv('ECMA_BASICSR_NATIVE', '0')
    monkeypatch.setattr(native_conv, '_state', {'lib': None, 'error': None, 'pool': None})
    assert native_conv.library() is None
    assert native_conv.status() == 'pytorch (disabled by ECMA_BASICSR_NATIVE=0)'
    assert not [w for w in recwarn if 'native' in str(w.message)]


@needs_compiler
def test_a_fused_ecma_runs_its_lams_through_the_kernel(monkeypatch):
    """So that the fused-equals-unfused tests of ``test_fuse.py`` cover the kernel, not a silent fallback."""
    calls = []
    real = native_conv.grouped_conv
    monkeypatch.setattr(native_conv, 'grouped_conv', lambda *a, **kw: calls.append(kw.get('prev') is not None)
                        or real(*a, **kw))
    net, x, ref = _tiny_ecma((2, 1), 'fft', (18, 26))
    with torch.inference_mode():
        out = fuse_for_inference(net)(x)
    # six blocks, each: the dw conv of all three LAMs and the cascaded context convs of LAM 2 and 3
    assert len(calls) == 5 * 3 * 2 and calls.count(True) == 2 * 3 * 2
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5 * max(1.0, ref.abs().max().item()))


@needs_compiler
def test_channel_norm_is_the_ffns_layernorm_on_a_tile_of_a_larger_map():
    from ecma_basicsr.archs.ecma_fuse import channel_norm
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1000, generator=gen) * 3 + 50  # far from zero: the two passes matter
    tile = x[:, 300:557]  # rows 1000 floats apart
    torch.testing.assert_close(native_conv.channel_norm(tile, 1e-6), channel_norm(tile, 1e-6), rtol=0, atol=2e-5)
    assert not native_conv.supports_rows(x.t())
    with pytest.raises(ValueError, match='unsupported tile'):
        native_conv.channel_norm(x.t(), 1e-6)


@needs_compiler
@pytest.mark.parametrize('chunk', [1000, native_conv.MOMENT_CHUNK])
def test_group_moments_are_groupnorms_statistics_even_far_from_zero(monkeypatch, chunk):
    """As the PyTorch version in test_fuse.py: several chunks (the last one partial), groups whose mean is
    10^4 times their spread, two samples."""
    monkeypatch.setattr(native_conv, 'MOMENT_CHUNK', chunk)
    gen = torch.Generator().manual_seed(0)
    per_group = lambda *v: torch.tensor(v).repeat_interleave(4).view(1, 12, 1, 1)  # noqa: E731
    x = torch.randn(2, 12, 37, 53, generator=gen) * per_group(1e-2, 1.0, 3.0) + per_group(100.0, 0.0, -5.0)
    mean, var = native_conv.group_moments(x, 3)
    ref_var, ref_mean = torch.var_mean(x.double().view(2, 3, -1), dim=2, correction=0)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-4, atol=0)
    assert native_conv.group_moments(x[:, :, :, :50], 3) is None  # not contiguous: PyTorch's turn


def test_split_torch_ops_runs_each_range_on_one_thread_of_its_own(monkeypatch):
    """The FFN's tiles go to pool threads that run their ops on one thread each, in the caller's grad and
    inference modes, while the caller keeps its own thread count; the result is the one-thread result."""
    if native_conv.torch_threads_of_this_thread() is None:
        pytest.skip('this PyTorch build has no per-thread OpenMP/MKL controls: the work runs unsplit')
    monkeypatch.setattr(native_conv, 'MIN_PIXELS_PER_THREAD', 1)
    monkeypatch.setattr(ecma_fuse, 'SPLIT_PIXELS', 1)
    seen = []

    def run(lo, hi):
        seen.append((lo, hi, torch.get_num_threads(), torch.is_inference_mode_enabled()))

    ffn = fuse_for_inference(_tiny_ecma((1, 1), 'fft', (8, 8))[0]).body.encoders[0][0].ffn
    x = torch.randn(2, ffn.w2.shape[0], 30, 70)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            one = ffn(x.clone())
        torch.set_num_threads(2)
        with torch.inference_mode():
            native_conv.split_torch_ops(run, 10, 10 ** 6)
            two = ffn(x.clone())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert sorted(s[:2] for s in seen) == [(0, 5), (5, 10)] and all(s[2:] == (1, True) for s in seen)
    assert torch.equal(one, two)
