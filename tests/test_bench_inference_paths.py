"""ECMA's inference-only fast paths (used under no_grad / inference_mode) equal the autograd path.

The speed work for ``basicsr bench`` gave ECMA separate inference forms (FFT conv with in-place
product and the bias on the DC bin, the FFN's LayerNorm affine folded into its first conv, the
CML's LAMs writing into one buffer normalised by one GroupNorm call, gamma folded into the reduce
conv, the FFN in pixel tiles, grouped sums written in place, 1x1 convs sent to oneDNN) and an
exact rewrite of the fusion's transposed conv (1x1 conv + PixelShuffle). They must not change
results: same output as the training path within 1e-5, for every ablation option.
"""
import pytest
import torch

from ecma_basicsr.archs.ecma_arch import ABLATIONS, ECMA, ECMASR, transposed_conv2x2_as_shuffle
from ecma_basicsr.archs.fft_conv import LargeKernelConv

TINY = dict(width=8, enc_blocks=(1, 2), kernels=(8, 6))


def _randomise(net, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised gammas would hide the blocks entirely
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.dim() > 1 else 0.5))
    return net


def _both_paths(net, x):
    net.eval()
    with torch.inference_mode():
        fast = net(x)
    with torch.enable_grad():
        slow = net(x.clone().requires_grad_())  # parameters require grad: the autograd path everywhere
    return fast, slow.detach()


@pytest.mark.parametrize('ablation', sorted(ABLATIONS))
def test_inference_path_equals_autograd_path(ablation):
    torch.manual_seed(0)
    net = _randomise(ECMA(large_kernel_mode='fft', **TINY, **ABLATIONS[ablation]))
    x = torch.rand(2, 3, 21, 30)
    fast, slow = _both_paths(net, x)
    assert fast.shape == slow.shape == x.shape
    assert (fast - slow).abs().max().item() <= 1e-5 * max(1.0, slow.abs().max().item())


@pytest.mark.parametrize('mode', ['fft', 'spatial'])
def test_sr_inference_path_equals_autograd_path(mode):
    net = _randomise(ECMASR(upscale=3, width=8, enc_blocks=(1, 1), kernels=(8, 4), large_kernel_mode=mode), 1)
    x = torch.rand(2, 3, 13, 9)
    fast, slow = _both_paths(net, x)
    assert (fast - slow).abs().max().item() <= 1e-5 * max(1.0, slow.abs().max().item())


def test_transposed_conv_as_shuffle_is_the_transposed_conv():
    up = torch.nn.ConvTranspose2d(6, 4, 2, stride=2)
    x = torch.randn(2, 6, 5, 7)
    assert torch.allclose(transposed_conv2x2_as_shuffle(x, up), up(x), atol=1e-6)


def test_fft_conv_inference_output_with_bias_on_dc_bin():
    torch.manual_seed(0)
    conv = LargeKernelConv(6, 3, 16, mode='fft')
    torch.nn.init.normal_(conv.bias, std=2.0)
    x = torch.randn(2, 6, 19, 23)
    with torch.inference_mode():
        fast = conv(x)
    conv.mode = 'spatial'
    ref = conv(x).detach()
    assert (fast - ref).abs().max().item() <= 1e-4
