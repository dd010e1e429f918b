"""Parameter and MAC counting with mmengine, with the FFT work of large-kernel convolutions counted.

The papers' "FLOPs" are multiply-accumulates (MACs) as counted by fvcore / mmengine
(:class:`mmengine.analysis.FlopAnalyzer`, which traces the model with ``torch.jit``). mmengine
gives the FFT ops no handle, so they count as zero and the FFT path of
:class:`~ecma_basicsr.archs.fft_conv.LargeKernelConv` would be free. :func:`analyze_macs` adds
op handles (``FlopAnalyzer.set_op_handle``) for what a trace of an FFT convolution shows:
``aten::fft_rfft2`` / ``aten::fft_irfft2`` (and the other ``aten::fft_*`` transforms) and the
complex ``aten::mul`` / ``aten::mul_`` of the spectral product. Their count goes into a separate
``fft`` figure, so a report can show MACs with and without the FFT work. The formula (real MACs)
is defined once beside the convolution it prices
(:func:`~ecma_basicsr.archs.fft_conv.fft_conv_macs` and its parts):

* a transform over N = N1 * N2 * ... points costs N log2 N when its signal is real (``rfft*``
  and ``irfft*``: half of the 2 N log2 N of a complex radix-2 FFT) and 2 N log2 N when it is
  complex (``fft*``, ``ifft*``); it is counted once per transformed plane (batch x channels);
* an element-wise product of complex tensors costs 4 real MACs per complex element (the sum
  over the group that follows is additions, which MAC counts leave out);
* work that depends only on the weights (the kernel's spectrum) is computed once and cached at
  inference, so it is not counted: the handles skip ops whose inputs do not depend on the
  model's input.

One more handle: ``aten::_convolution_mode`` (``nn.Conv2d(..., padding='same')``), which
mmengine 0.10 does not know and would silently count as zero, is counted like any convolution.
Count the network as built, not its :func:`~ecma_basicsr.archs.fuse_for_inference` copy: the
count is then the architecture's (the fused copy skips memory passes and, in the fusion block,
some MACs).
"""
import math
from collections import Counter
from dataclasses import dataclass, field

import torch

from ecma_basicsr.archs.fft_conv import LargeKernelConv, spectral_product_macs, transform_macs

REAL_FFT_OPS = ('aten::fft_rfft', 'aten::fft_rfft2', 'aten::fft_rfftn', 'aten::fft_irfft', 'aten::fft_irfft2',
                'aten::fft_irfftn')
COMPLEX_FFT_OPS = ('aten::fft_fft', 'aten::fft_fft2', 'aten::fft_fftn', 'aten::fft_ifft', 'aten::fft_ifft2',
                   'aten::fft_ifftn')
FFT_KEY = 'fft'  # operator name under which the handles report FFT work


def count_params(model):
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------
# op handles
# ------------------------------------------------------------------------------------------------
def _shape(val):
    return list(val.type().sizes()) if val.isCompleteTensor() else None


def _int_list(val):
    """The ints of a traced ``int[]?`` argument (``None`` when it is None or not constant)."""
    node = val.node()
    if node.kind() == 'prim::Constant':
        ivalue = val.toIValue()
        if ivalue is None:
            return None
        return [int(ivalue)] if isinstance(ivalue, int) else [int(v) for v in ivalue]
    if node.kind() == 'prim::ListConstruct':
        out = []
        for item in node.inputs():
            if item.node().kind() != 'prim::Constant':
                return None
            out.append(int(item.toIValue()))
        return out
    return None


class _DataDependence:
    """Whether a traced value depends on the model's input(s) or only on parameters/constants.

    In mmengine's trace the model inputs are the first ``n_inputs`` graph parameters and the
    module's parameters/buffers follow, so a value is data-dependent when a walk back through
    its producers reaches a graph parameter with offset < ``n_inputs``.
    """

    def __init__(self, n_inputs):
        self.n_inputs = n_inputs
        self.memo = {}

    def __call__(self, val):
        key = val.unique()
        if key in self.memo:
            return self.memo[key]
        # iterative post-order walk (graphs of big networks are deep)
        stack = [(val, False)]
        while stack:
            v, expanded = stack.pop()
            k = v.unique()
            if k in self.memo:
                continue
            node = v.node()
            if node.kind() == 'prim::Param':
                self.memo[k] = v.offset() < self.n_inputs
                continue
            inputs = list(node.inputs())
            if expanded:
                self.memo[k] = any(self.memo.get(i.unique(), False) for i in inputs)
                continue
            stack.append((v, True))
            stack.extend((i, False) for i in inputs if i.unique() not in self.memo)
        return self.memo[key]


def _fft_dims(op, args, out_shape):
    """Transform dims of a traced ``aten::fft_*`` op (normalised to non-negative ints)."""
    ndim = len(out_shape)
    # signatures: fft_*(self, n|s, dim, norm); 1-D ops take ``int? n, int dim``
    dims = _int_list(args[2]) if len(args) > 2 else None
    if dims is None:
        if op.endswith('2'):
            dims = [-2, -1]
        elif op.endswith('n'):
            s = _int_list(args[1])
            dims = list(range(-len(s), 0)) if s else list(range(ndim))
        else:
            dims = [-1]
    return [d % ndim for d in dims]


def fft_handle(real, depends_on_input):
    """mmengine handle for an ``aten::fft_*`` op: :func:`transform_macs` per transformed plane."""

    def handle(inputs, outputs):
        if not depends_on_input(inputs[0]):
            return Counter({FFT_KEY: 0})
        out_shape = _shape(outputs[0])
        in_shape = _shape(inputs[0])
        if out_shape is None or in_shape is None:
            return Counter({FFT_KEY: 0})
        op = outputs[0].node().kind()
        dims = _fft_dims(op, inputs, out_shape)
        if 'irfft' in op or not real:
            # real output (irfft) or complex transform: the output holds the full transform size
            sizes = [out_shape[d] for d in dims]
        else:
            # rfft: the signal length is ``s``/``n`` when given (zero padding), else the input's
            sizes = _int_list(inputs[1]) or [in_shape[d] for d in dims]
        points = math.prod(sizes)
        planes = math.prod(n for d, n in enumerate(out_shape) if d not in dims)
        return Counter({FFT_KEY: planes * transform_macs(points, real)})

    return handle


def complex_mul_handle(depends_on_input):
    """mmengine handle for ``aten::mul`` / ``mul_``: 4 real MACs per element of a complex product, else 0.

    Real element-wise products stay uncounted, as in mmengine's default (which ignores them).
    """

    def handle(inputs, outputs):
        out = outputs[0]
        if not out.isCompleteTensor() or 'Complex' not in str(out.type().scalarType()):
            return Counter({'mul': 0})
        if not any(depends_on_input(v) for v in inputs if v.type().kind() == 'TensorType'):
            return Counter({FFT_KEY: 0})
        return Counter({FFT_KEY: spectral_product_macs(math.prod(_shape(out)))})

    return handle


def conv_mode_handle(inputs, outputs):
    """``aten::_convolution_mode`` (string padding such as 'same'): MACs like any convolution."""
    from mmengine.analysis.jit_handles import conv_flop_count
    return Counter({'conv': conv_flop_count(_shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0]))})


@dataclass
class MacCount:
    """Result of :func:`analyze_macs` (all counts are real multiply-accumulates).

    Attributes:
        macs (float): mmengine's count without the FFT work (the papers' convention).
        fft (float): FFT work by the module-docstring formula.
        by_operator (Counter): MACs per operator name (``conv``, ``linear``, ``fft``, ...).
        unsupported (Counter): Traced ops mmengine has no handle for (counted as zero).
        by_module (Counter): MACs per module name, FFT work included ('' is the whole model).
    """
    macs: float
    fft: float
    by_operator: Counter = field(default_factory=Counter)
    unsupported: Counter = field(default_factory=Counter)
    by_module: Counter = field(default_factory=Counter)

    @property
    def total(self):
        return self.macs + self.fft


def _as_input(model, input_or_shape):
    if isinstance(input_or_shape, torch.Tensor):
        return input_or_shape
    param = next(model.parameters(), None)
    device = param.device if param is not None else 'cpu'
    return torch.zeros(tuple(input_or_shape), device=device)


def analyze_macs(model, input_or_shape, large_kernel_mode='fft'):
    """Count MACs of one forward with mmengine, FFT work counted separately.

    Args:
        model (nn.Module): The network (put in eval mode for the count, then restored).
        input_or_shape (Tensor | tuple): The input, or its shape (zeros are traced).
        large_kernel_mode (str | None): Mode forced on every :class:`LargeKernelConv` while
            counting ('fft' as in the paper; 'spatial' counts the large kernel as a convolution);
            None keeps each layer's mode ('auto' would time both paths inside the trace).

    Returns:
        MacCount
    """
    from mmengine.analysis import FlopAnalyzer

    x = _as_input(model, input_or_shape)
    convs = [m for m in model.modules() if isinstance(m, LargeKernelConv)]
    saved_modes = [m.mode for m in convs]
    was_training = model.training
    try:
        if large_kernel_mode is not None:
            for m in convs:
                m.mode = large_kernel_mode
        model.eval()
        depends = _DataDependence(n_inputs=1)
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, (x, ))
            analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            handles = {op: fft_handle(True, depends) for op in REAL_FFT_OPS}
            handles.update({op: fft_handle(False, depends) for op in COMPLEX_FFT_OPS})
            handles['aten::mul'] = handles['aten::mul_'] = complex_mul_handle(depends)
            handles['aten::_convolution_mode'] = conv_mode_handle
            analyzer.set_op_handle(**handles)
            by_op = Counter(analyzer.by_operator())
            unsupported = Counter(analyzer.unsupported_ops())
            by_module = Counter(analyzer.by_module())
    finally:
        for m, mode in zip(convs, saved_modes):
            m.mode = mode
        model.train(was_training)
    by_op = Counter({k: v for k, v in by_op.items() if v})
    fft = float(by_op.get(FFT_KEY, 0))
    return MacCount(float(sum(by_op.values())) - fft, fft, by_op, unsupported, by_module)


def count_macs(model, input_shape):
    """(MACs without FFT work, FFT MACs) for one forward of ``input_shape``; large kernels on FFT."""
    result = analyze_macs(model, input_shape, large_kernel_mode='fft')
    return result.macs, result.fft
