"""SwinIR (BasicSR's class) as the plugin runs it: the authors' padding, and the classical x4 presets.

The authors' ``SwinIR.forward`` reflect-pads to the window and crops; BasicSR's class does not, so the
plugin adds it (:mod:`ecma_basicsr.archs.window_padding`; numerical equivalence on the authors' fixtures
is in test_golden.py). The bench preset ``SwinIR-x4`` is the authors' DIV2K model (``img_size`` 48, the
training patch, which fixes the shape of the stored ``attn_mask`` buffers); their DF2K ``s64`` checkpoint
needs ``img_size: 64``.
"""
import pytest
import torch
from basicsr.archs import build_network

from ecma_basicsr.archs.window_padding import add_window_padding, window_multiple
from ecma_basicsr.bench import BenchError
from ecma_basicsr.bench.networks import build, parse_spec

TINY = dict(upscale=2, in_chans=3, img_size=16, window_size=4, img_range=1.0, depths=[2], embed_dim=8,
            num_heads=[2], mlp_ratio=2, upsampler='pixelshuffledirect', resi_connection='1conv')


def test_padding_makes_any_size_work_and_is_a_no_op_on_multiples():
    torch.manual_seed(0)
    net = build_network({'type': 'SwinIR', **TINY}).eval()
    x = torch.rand(1, 3, 16, 12)
    with torch.no_grad():
        plain = net(x)
        with pytest.raises(RuntimeError):
            net(torch.rand(1, 3, 13, 10))
        add_window_padding(add_window_padding(net))  # idempotent
        assert torch.equal(net(x), plain)
        odd = torch.rand(1, 3, 13, 10)
        y = net(odd)
        assert y.shape == (1, 3, 26, 20)
        # the authors' convention: reflect-pad bottom / right to 16 x 12, run, crop
        ref = net(torch.nn.functional.pad(odd, (0, 2, 0, 3), mode='reflect'))
        assert torch.equal(y, ref[..., :26, :20])
    assert len(net._forward_pre_hooks) == 1 and window_multiple(net) == 4


def test_padding_crops_restoration_outputs_to_the_input_size():
    """BasicSR's SwinIR keeps ``upscale`` (default 2) without an upsampler; the output ratio is 1 then."""
    net = add_window_padding(build_network({'type': 'SwinIR', **dict(TINY, upsampler='')})).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 9, 7)).shape == (1, 3, 9, 7)


def test_other_networks_are_left_alone():
    net = build_network({'type': 'NAFNet', 'width': 8})
    assert add_window_padding(net) is net and window_multiple(net) == 1 and not net._forward_pre_hooks


def _masks(spec):
    net = build_network({'type': spec.arch, **spec.kwargs})  # BasicSR's SwinIR does not build on 'meta'
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if k.endswith('attn_mask')}


def test_classical_x4_preset_is_the_div2k_s48_model_and_takes_img_size_64(tmp_path):
    s48, s64 = parse_spec('SwinIR-x4'), parse_spec('SwinIR-x4:img_size=64')
    assert s48.kwargs['img_size'] == 48 and s64.kwargs['img_size'] == 64
    assert _masks(s48)['layers.0.residual_group.blocks.1.attn_mask'] == (36, 64, 64)  # (48 / 8)^2 windows
    assert _masks(s64)['layers.0.residual_group.blocks.1.attn_mask'] == (64, 64, 64)  # the s64 checkpoint's
    # a checkpoint with the s64 masks is refused by the s48 preset, naming the buffers
    small = dict(TINY, img_size=32, window_size=8, upscale=4, upsampler='pixelshuffle')
    path = tmp_path / 's64.pth'
    torch.save({'params': build_network({'type': 'SwinIR', **small}).state_dict()}, path)
    args = ','.join(f'{k}={v}' for k, v in small.items() if k != 'img_size').replace(' ', '').replace("''", '""')
    with pytest.raises(BenchError, match=r'attn_mask: \(16, 64, 64\) vs \(4, 64, 64\)'):
        build(parse_spec(f'SwinIR:{args},img_size=16@{path}'))
    build(parse_spec(f'SwinIR:{args},img_size=32@{path}'))
