"""``basicsr export``: ONNX with dynamic size for ECMA (large kernel exported spatially) and NAFNet, checked with
onnxruntime against the PyTorch network (ECMA on its FFT path) at two sizes."""
import importlib.util

import pytest
import torch

from ecma_basicsr import export

MISSING = [m for m in ('onnx', 'onnxscript', 'onnxruntime') if importlib.util.find_spec(m) is None]
needs_deploy = pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed: "
                                                       "pip install -e '.[deploy]' (make test installs it)")


def _randomise(net):
    """Random weights, zero-initialised branch scales included, so every branch reaches the output."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.2)
    return net.eval()


@needs_deploy
@pytest.mark.parametrize('spec', ['ECMA:width=8,enc_blocks=[1,1],kernels=[16,8],large_kernel_mode=fft',
                                  'NAFNet:width=8,enc_blk_nums=[1,1],middle_blk_num=1,dec_blk_nums=[1,1]'])
def test_onnx_matches_torch_at_two_sizes(tmp_path, spec):
    from ecma_basicsr.bench.networks import build, parse_spec
    net = _randomise(build(parse_spec(spec)))
    if 'ECMA' in spec:
        from ecma_basicsr.archs.fft_conv import LargeKernelConv
        assert any(isinstance(m, LargeKernelConv) and m.mode == 'fft' for m in net.modules())
    path = export.export_onnx(net, str(tmp_path / 'net.onnx'), 3)
    results = export.check_onnx(net, path, 3, [(64, 64), (37, 61)])
    assert [shape for shape, _ in results] == [(1, 3, 64, 64), (1, 3, 37, 61)]
    assert all(diff <= 1e-4 for _, diff in results), results
    import onnx
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for d in (dims[0], dims[2], dims[3])), 'batch, height and width are dynamic'


def test_missing_deploy_extra_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(export, '_importable', lambda name: name != 'onnxruntime')
    with pytest.raises(export.ExportError, match=r"onnxruntime not installed; install the deploy extra: pip install"):
        export.main(['ECMA-T', '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(export.ExportError, match='HxW'):
        export.main(['ECMA-T', '--out', str(tmp_path / 'x.onnx'), '--check-sizes', '64'])
