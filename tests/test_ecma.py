"""ECMA specifics: FFT == spatial large-kernel conv, exact Table 1 configs, ablations, errors."""
import pytest
import torch

from ecma_basicsr.archs.ecma_arch import ABLATIONS, ECMA, ECMASR, same_cost_spatial_kernel
from ecma_basicsr.archs.fft_conv import (
    LargeKernelConv,
    fast_fft_size,
    fft_grouped_conv,
    kernel_spectrum,
    pin_large_kernel_paths,
    spatial_grouped_conv,
)


@pytest.mark.parametrize('k', [8, 16, 24, 32])
@pytest.mark.parametrize('hw', [(37, 53), (64, 64), (33, 8), (1, 1)])
@pytest.mark.parametrize('group_in', [1, 3])
def test_fft_conv_equals_spatial_conv(k, hw, group_in):
    torch.manual_seed(k)
    x = torch.randn(2, 4 * group_in, *hw)
    w = torch.randn(4, group_in, k, k) / k
    b = torch.randn(4)
    ref = spatial_grouped_conv(x, w, b)
    assert ref.shape == x.shape[:1] + (4, ) + hw
    assert (fft_grouped_conv(x, w, b) - ref).abs().max().item() <= 1e-4
    # and against PyTorch's own 'same' padding, so the padding convention is the standard one
    torch_same = torch.nn.functional.conv2d(x, w, b, padding='same', groups=4)
    assert (ref - torch_same).abs().max().item() <= 1e-4


@pytest.mark.parametrize('k,plane', [(32, (750, 1296)), (7, (40, 24)), (8, (9, 30)), (16, (12, 20))])
def test_kernel_spectrum_is_the_rfft2_of_the_padded_rolled_kernel(k, plane):
    """Only the kernel's rows get the row transform; the result must be the whole plane's rfft2."""
    w = torch.randn(3, 2, k, k)
    before = (k - 1) // 2
    padded = torch.nn.functional.pad(w, (0, plane[1] - k, 0, plane[0] - k))
    full = torch.fft.rfft2(torch.roll(padded, shifts=(-before, -before), dims=(-2, -1))).conj()
    torch.testing.assert_close(kernel_spectrum(w, plane), full, rtol=0, atol=1e-4)


def test_fft_conv_gradients_match_spatial():
    torch.manual_seed(0)
    x = torch.randn(1, 6, 19, 22)
    grads = []
    for fn in (fft_grouped_conv, spatial_grouped_conv):
        w = (torch.randn(3, 2, 16, 16) / 16).requires_grad_()
        torch.manual_seed(1)
        w.data = torch.randn(3, 2, 16, 16) / 16
        xi = x.clone().requires_grad_()
        fn(xi, w).square().sum().backward()
        grads.append((xi.grad, w.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-3)


def test_fft_runs_in_float32_under_autocast():
    conv = LargeKernelConv(4, 4, 16, mode='fft')
    x = torch.randn(1, 4, 20, 20)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = conv(x.bfloat16())
    assert y.dtype == torch.bfloat16
    ref = spatial_grouped_conv(x, conv.weight, conv.bias)
    assert (y.float() - ref).abs().max() < 0.1  # only the bf16 input/output rounding remains


def test_modes_give_identical_outputs_and_auto_picks_one():
    torch.manual_seed(0)
    net = ECMA(width=8, enc_blocks=(1, 1, 1, 1), kernels=(8, 8, 8, 8), large_kernel_mode='fft').eval()
    x = torch.rand(1, 3, 40, 24)
    outs = {}
    for mode in ('fft', 'spatial', 'auto'):
        for m in net.modules():
            if isinstance(m, LargeKernelConv):
                m.mode = mode
        with torch.no_grad():
            outs[mode] = net(x)
    assert (outs['fft'] - outs['spatial']).abs().max() < 1e-4
    assert (outs['auto'] - outs['spatial']).abs().max() < 1e-4
    conv = next(m for m in net.modules() if isinstance(m, LargeKernelConv))
    assert conv.path_for(torch.rand(1, conv.in_channels, 40, 24)) in ('fft', 'spatial')


def test_pinned_paths_are_what_auto_measures_on_a_copy():
    """For a traced forward (``basicsr bench --compile``) 'auto' is replaced by its choice for the input size,
    on a copy: the network keeps 'auto', the copy computes the same function."""
    torch.manual_seed(0)
    net = ECMA(width=8, enc_blocks=(1, 1), kernels=(8, 4)).eval()
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised gammas would hide the large kernels
            p.normal_(0, 0.3)
    x = torch.rand(1, 3, 24, 40)
    pinned = pin_large_kernel_paths(net, x)
    autos = [m for m in net.modules() if isinstance(m, LargeKernelConv)]
    fixed = [m for m in pinned.modules() if isinstance(m, LargeKernelConv)]
    assert pinned is not net and len(fixed) == len(autos) > 0
    assert all(m.mode == 'auto' for m in autos) and all(m.mode in ('fft', 'spatial') for m in fixed)
    with torch.no_grad():
        torch.testing.assert_close(pinned(x), net(x), rtol=0, atol=1e-5)
    spatial = ECMA(width=8, enc_blocks=(1, 1), kernels=(8, 4), large_kernel_mode='spatial')
    assert pin_large_kernel_paths(spatial, x) is spatial  # nothing to pin: no copy


def test_auto_timing_stops_early_when_one_path_is_clearly_slower():
    import time

    from ecma_basicsr.archs.fft_conv import _time_pair
    calls = {'fast': 0, 'slow': 0}

    def run(name, seconds):
        def fn():
            calls[name] += 1
            time.sleep(seconds)
        return fn

    fast, slow = _time_pair(run('fast', 0.0), run('slow', 0.02), rounds=3)
    assert slow > 3 * fast and calls == {'fast': 2, 'slow': 2}  # warm-up + one decisive round
    calls.update(fast=0, slow=0)
    _time_pair(run('fast', 0.005), run('slow', 0.005), rounds=3)
    assert calls == {'fast': 4, 'slow': 4}  # a close call gets all rounds


def test_fast_fft_size():
    assert [fast_fft_size(n) for n in (1, 11, 13, 17, 121, 257)] == [1, 12, 14, 18, 125, 270]


@pytest.mark.parametrize('kwargs,expected', [
    (dict(variant="T"), 10606067),
    (dict(variant="S"), 32126051),
    (dict(variant="B"), 19639555),
])
def test_exact_parameter_counts_table1(kwargs, expected):
    assert sum(p.numel() for p in ECMA(**kwargs).parameters()) == expected


@pytest.mark.parametrize('upscale,expected', [(2, 1399884), (3, 1408539), (4, 1420656)])
def test_exact_parameter_counts_sr(upscale, expected):
    assert sum(p.numel() for p in ECMASR(upscale).parameters()) == expected


def test_full_size_variant_is_the_paper_configuration():
    net = ECMA('B')
    assert [len(s) for s in net.body.encoders] == [2, 4, 4, 3]
    assert [len(s) for s in net.body.decoders] == [3, 4, 4, 2]
    assert [s[0].cml.lams[0].conv_ctx.kernel_size[0] for s in net.body.encoders] == [32, 24, 16, 8]
    assert [s[0].cml.lams[0].conv_ctx.kernel_size[0] for s in net.body.decoders] == [8, 16, 24, 32]
    assert [lam.conv_ctx.kernel_size[0] for lam in net.body.encoders[0][0].cml.lams] == [32, 5, 3]


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablations_build_and_run(name):
    torch.manual_seed(0)
    net = ECMA(**dict(ABLATIONS[name], width=8, enc_blocks=(1, 1, 1, 1), large_kernel_mode='fft'))
    y = net(torch.rand(1, 3, 21, 18))
    assert y.shape == (1, 3, 21, 18)
    y.mean().backward()


def test_ablation_structure():
    tiny = dict(width=8, enc_blocks=(1, 1, 1, 1))
    kernels = lambda net: [lam.conv_ctx.kernel_size[0] for lam in net.body.encoders[0][0].cml.lams]  # noqa: E731
    assert kernels(ECMA(**dict(ABLATIONS['table9_small_to_large'], **tiny))) == [3, 5, 32]
    assert kernels(ECMA(**dict(ABLATIONS['table9_without_medium'], **tiny))) == [32, 3]
    assert kernels(ECMA(**dict(ABLATIONS['table9_three_large'], **tiny))) == [32, 32, 32]
    assert kernels(ECMA(**dict(ABLATIONS['table9_large_spatial_same_cost'], **tiny)))[0] == same_cost_spatial_kernel(
        32, 256, 256)
    no_cascade = ECMA(**dict(ABLATIONS['table9_no_cascade'], **tiny)).body.encoders[0][0].cml
    assert all(lam.to_context is None for lam in no_cascade.lams)
    concat = ECMA(**dict(ABLATIONS['table8_concatenation'], **tiny)).body.encoders[0][0].cml.lams[0]
    assert concat.out_channels == 2 * 2  # two branches of c/4 = 2 channels


def test_same_cost_kernel_sizes():
    sizes = [same_cost_spatial_kernel(k, s, s) for k, s in zip((32, 24, 16, 8), (256, 128, 64, 32))]
    assert sizes == sorted(sizes, reverse=True) and all(3 <= k < 32 for k in sizes)
    assert sizes == [6, 6, 6, 5]


@pytest.mark.parametrize('hw', [(1, 1), (37, 53), (255, 257)])
def test_ecma_any_size_gray_and_rgb(hw):
    for in_ch in (1, 3):
        net = ECMA(width=8, enc_blocks=(1, 1, 1, 1), in_ch=in_ch, large_kernel_mode='fft').eval()
        with torch.no_grad():
            assert net(torch.rand(1, in_ch, *hw)).shape == (1, in_ch, *hw)


def test_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="valid choices: T, S, B"):
        ECMA(variant='L')
    with pytest.raises(ValueError, match=r'valid choices: \(2, 3, 4\)'):
        ECMASR(upscale=8)
    with pytest.raises(ValueError, match='lam_combine must be one of'):
        ECMA(width=8, enc_blocks=(1, 1, 1, 1), lam_combine='mul')
    with pytest.raises(ValueError, match='large_kernel_mode must be one of'):
        ECMA(width=8, enc_blocks=(1, 1, 1, 1), large_kernel_mode='fast')
    net = ECMA(width=8, enc_blocks=(1, 1, 1, 1))
    with pytest.raises(ValueError, match='4 channels'):
        net(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match='1 channels'):
        net(torch.rand(1, 1, 8, 8))


def test_checkpoint_mismatch_names_the_upscale():
    from ecma_basicsr.archs.state_dict_check import CheckpointMismatchError
    x4 = ECMASR(4, width=8, enc_blocks=(1, 1))
    with pytest.raises(CheckpointMismatchError, match='trained for upscale=4'):
        ECMASR(3, width=8, enc_blocks=(1, 1)).load_state_dict(x4.state_dict())
    ECMASR(4, width=8, enc_blocks=(1, 1)).load_state_dict(x4.state_dict())


@pytest.mark.parametrize('name', ['ECMA-T', 'ECMA-S', 'ECMA-B', 'ECMA-SR'])
def test_table1_params_within_3_and_macs_within_5_percent(name):
    """Table 1 through the same report users run (``python -m ecma_basicsr.analysis.table1``)."""
    from ecma_basicsr.analysis.table1 import table1_report
    (_, params, p_params, macs, macs_fft, p_macs), = table1_report([name])
    assert abs(params / p_params - 1) <= 0.03
    assert abs(macs / p_macs - 1) <= 0.05 and abs(macs_fft / p_macs - 1) <= 0.05
    assert macs_fft > macs  # the FFT work is counted in the second figure


@pytest.mark.parametrize('lam_index', [1, 2])
@pytest.mark.parametrize('fft', [False, True])
def test_cascade_reaches_every_channel(lam_index, fft):
    """Eq. 5: in LAM_2 and LAM_3 every output channel of W' sees both O'_{i-1} and I'_i, and every
    channel of O'_{i-1} reaches some output (with a plain concatenation, neither holds)."""
    from ecma_basicsr.archs.ecma_arch import CML, cascade_context
    torch.manual_seed(0)
    c, q = 32, 8
    cml = CML(c, [8, 5, 3], [fft, fft, fft], large_kernel_mode='fft' if fft else 'auto')
    conv = cml.lams[lam_index].conv_ctx
    prev = torch.randn(1, q, 12, 12, requires_grad=True)
    raw = torch.randn(1, q * (lam_index + 1), 12, 12, requires_grad=True)

    def dependence(context):
        out = conv(context)
        sees = []
        for j in range(q):
            g_prev, g_raw = torch.autograd.grad(out[:, j].sum(), (prev, raw), retain_graph=True)
            sees.append((g_prev.abs().sum().item() > 0, g_raw.abs().sum().item() > 0))
        g_prev, = torch.autograd.grad(out.sum(), prev)
        return sees, [g_prev[:, k].abs().sum().item() > 0 for k in range(q)]

    sees, reached = dependence(cascade_context(prev, raw))
    assert all(a and b for a, b in sees) and all(reached)
    sees, _ = dependence(torch.cat([prev, raw], dim=1))  # the wiring this replaced
    assert not all(a and b for a, b in sees)


def test_checkpoint_of_another_wiring_is_refused():
    from ecma_basicsr.archs.state_dict_check import CheckpointMismatchError
    net = ECMA(width=8, enc_blocks=(1, 1), kernels=(8, 4))
    state = net.state_dict()
    ECMA(width=8, enc_blocks=(1, 1), kernels=(8, 4)).load_state_dict(state)  # same wiring: loads
    old = {k: v for k, v in state.items() if k != 'wiring'}
    for strict in (True, False):
        with pytest.raises(CheckpointMismatchError, match=r'trained with ECMA wiring 1, this network has wiring 2'):
            net.load_state_dict(old, strict=strict)


def test_lam_convs_have_no_bias():
    """Eq. 2 is bilinear in W and W': no bias terms (module docstring)."""
    net = ECMA(width=8, enc_blocks=(1, 1), kernels=(8, 4))
    for lam in (m for m in net.modules() if type(m).__name__ == 'LAM'):
        assert lam.conv_w.bias is None and lam.conv_ctx.bias is None
