"""``basicsr export``: any network of the harness to ONNX with dynamic height/width, checked with onnxruntime.

    basicsr export ECMA-T@net_g_latest.pth --out ecma_t.onnx
    basicsr export NAFNet-GoPro-width32@NAFNet-GoPro-width32.pth --out nafnet.onnx --check-sizes 256x256,181x263

ECMA's large kernel W' (Eq. 4-5, run through the FFT by default) is exported through its spatial form
(:class:`~ecma_basicsr.archs.fft_conv.LargeKernelConv` in ``'spatial'`` mode, the same convolution computed
with ``conv2d``), set on a copy of the network, so the graph holds only standard ONNX operators. Networks
that pad their input to a multiple (the U-Nets) are wrapped so the padding is computed from the input's
symbolic size in the graph instead of being frozen at the size used for tracing. The exported file is then
run with onnxruntime on the CPU at two sizes and compared with the PyTorch network as built (FFT path
included); the command prints max |onnx - torch| for both and fails when either exceeds ``--tol``.

Needs the ``deploy`` extra (``pip install -e '.[deploy]'``: onnx, onnxscript, onnxruntime).
"""
import argparse
import copy
import os
import os.path as osp
import sys

from ecma_basicsr.errors import UserError

DEPLOY_HINT = "install the deploy extra: pip install -e '.[deploy]' (onnx, onnxscript, onnxruntime)"
TRACE_SIZE = 64


class ExportError(UserError):
    """Bad ``basicsr export`` input or a failed check; the message says the fix."""


def pad_rule(net):
    """``(multiple, mode)`` a network pads its input to before its forward, or None.

    ECMA and ECMASR replicate-pad to ``body.multiple``; NAFNet and M3SNet zero-pad to ``padder_size``.
    The export wrapper does the same padding with the input's symbolic size, so the network inside never
    pads (its own check sees a multiple) and the result is identical.
    """
    body = getattr(net, 'body', None)
    if type(net).__name__ in ('ECMA', 'ECMASR') and hasattr(body, 'multiple'):
        return int(body.multiple), 'replicate'
    if hasattr(net, 'padder_size'):
        return int(net.padder_size), 'constant'
    return None


def parse_sizes(text):
    sizes = []
    for item in text.split(','):
        try:
            h, w = (int(v) for v in item.lower().split('x'))
            assert h > 0 and w > 0
        except (ValueError, AssertionError):
            raise ExportError(f"--check-sizes '{text}': write HxW pairs separated by commas, e.g. 64x64,75x101.") \
                from None
        sizes.append((h, w))
    return sizes


def exportable(net):
    """A copy of ``net`` whose large kernels run spatially and whose padding is traced symbolically."""
    import torch
    import torch.nn.functional as F

    from ecma_basicsr.archs.fft_conv import LargeKernelConv

    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, LargeKernelConv):
            module.mode = 'spatial'
    rule = pad_rule(net)
    if rule is None:
        return net

    class Padded(torch.nn.Module):
        def __init__(self, inner, multiple, mode, scale):
            super().__init__()
            self.inner, self.multiple, self.mode, self.scale = inner, multiple, mode, scale

        def forward(self, x):
            h, w = x.shape[-2:]
            m = self.multiple
            x = F.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m), mode=self.mode)
            return self.inner(x)[..., :h * self.scale, :w * self.scale]

    scale = int(getattr(net, 'upscale', 1) or 1)
    return Padded(net, rule[0], rule[1], scale).eval()


def export_onnx(net, path, in_ch, opset=18):
    """Write ``net`` to ``path`` with dynamic batch, height and width (torch.export-based exporter)."""
    import torch

    model = exportable(net)
    x = torch.rand(2, in_ch, TRACE_SIZE, TRACE_SIZE)  # batch 2: a size-1 example would fix N to 1
    dims = {0: torch.export.Dim('batch', min=1, max=64), 2: torch.export.Dim('height', min=8, max=16384),
            3: torch.export.Dim('width', min=8, max=16384)}
    with torch.no_grad():
        program = torch.onnx.export(model, (x,), None, input_names=['input'], output_names=['output'],
                                    dynamo=True, dynamic_shapes={'x': dims}, opset_version=opset, verbose=False)
    program.save(path)
    return path


def check_onnx(net, path, in_ch, sizes, device='cpu'):
    """``[(shape, max |onnx - torch|)]`` over ``sizes`` with onnxruntime's CPU provider."""
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    gen = torch.Generator().manual_seed(0)
    results = []
    for h, w in sizes:
        x = torch.rand(1, in_ch, h, w, generator=gen)
        with torch.inference_mode():
            ref = net(x.to(device)).float().cpu().numpy()
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        if out.shape != ref.shape:
            raise ExportError(f'{path}: onnxruntime output {out.shape} != torch {ref.shape} at {h}x{w}.')
        results.append(((1, in_ch, h, w), float(np.abs(out - ref).max())))
    return results


def build_parser():
    parser = argparse.ArgumentParser(prog='basicsr export', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='network: PRESET, ARCH:key=value or OPTIONS.yml, with @WEIGHTS '
                                            '(as in basicsr restore -h; no weights: random initialisation).\n'
                                            f'needs: {DEPLOY_HINT}')
    parser.add_argument('network', help='the network, e.g. ECMA-T@net_g_latest.pth')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--check-sizes', default='64x64,75x101',
                        help='input sizes HxW checked with onnxruntime (default 64x64,75x101)')
    parser.add_argument('--tol', type=float, default=1e-4, help='largest accepted max |onnx - torch| (default 1e-4)')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (default 18)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.out.endswith('.onnx'):
        raise ExportError(f"--out '{args.out}' should end with .onnx.")
    if osp.isdir(args.out):
        raise ExportError(f"--out '{args.out}' is a folder; give a file name such as model.onnx.")
    sizes = parse_sizes(args.check_sizes)
    missing = [m for m in ('onnx', 'onnxscript', 'onnxruntime') if not _importable(m)]
    if missing:
        raise ExportError(f"{', '.join(missing)} not installed; {DEPLOY_HINT}.")

    import torch

    from ecma_basicsr.bench.networks import build, parse_spec

    spec = parse_spec(args.network)
    if spec.checkpoint and not osp.isfile(spec.checkpoint):
        raise ExportError(f"weights file '{spec.checkpoint}' does not exist.")
    if not spec.checkpoint:
        print(f'{spec.label}: no weights given, exporting the randomly initialised network', file=sys.stderr)
        torch.manual_seed(0)
    net = build(spec, 'cpu')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    export_onnx(net, args.out, spec.in_ch, args.opset)
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MB; input NxCxHxW with dynamic N, H, W)')
    worst = 0.0
    for shape, diff in check_onnx(net, args.out, spec.in_ch, sizes):
        print(f"max |onnx - torch| at {'x'.join(map(str, shape))}: {diff:.3g}")
        worst = max(worst, diff)
    if worst > args.tol:
        raise ExportError(f'onnxruntime differs from torch by {worst:.3g} > --tol {args.tol:g}; the exported graph '
                          'is wrong for some size (report it with the network spec).')
    return 0


def _importable(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None
