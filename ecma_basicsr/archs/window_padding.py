"""Pad to the window multiple and crop back around networks whose forward cannot do it itself.

BasicSR's ``SwinIR`` (the toolbox class the plugin runs for the SwinIR rows of ECMA Table 5) has
no padding step: its window partition fails for an H or W that is not a multiple of
``window_size``. The authors' ``SwinIR.forward`` (Liang et al., "SwinIR: Image Restoration Using
Swin Transformer", ICCVW 2021; github.com/JingyunLiang/SwinIR, ``check_image_size``) reflect-pads
the bottom and right edges to that multiple before anything else and crops the result back to
``upscale`` times the input. :func:`add_window_padding` gives a built network exactly that
behaviour with two forward hooks, so the module keeps its class, its state-dict keys and its
checkpoint format (BasicSR saving / loading, EMA copies and DDP are unaffected). The plugin applies
it wherever it runs a network it did not write: ``ECMAModel`` (validation and test), ``basicsr
bench`` / ``restore`` (``bench.networks.build``) and the golden tests.

Networks of this package pad inside their own ``forward`` and are left unchanged.
"""
from ecma_basicsr.archs.arch_util import pad_to_multiple

# class name -> attribute that holds the multiple H and W must have
WINDOW_ATTRIBUTES = {'SwinIR': 'window_size'}
_FLAG = '_window_padding_multiple'


def window_multiple(net):
    """The multiple ``net`` needs its input H, W to be (1 when it handles any size itself)."""
    attr = WINDOW_ATTRIBUTES.get(type(net).__name__)
    if attr is None:
        return 1
    # BasicSR's SwinIR keeps the window only in its blocks, not on the top module.
    for module in net.modules():
        if isinstance(getattr(module, attr, None), int):
            return int(getattr(module, attr))
    return 1


def _pad_input(module, args):
    x, *rest = args
    padded, (h, w) = pad_to_multiple(x, getattr(module, _FLAG), mode='reflect')
    module._window_padding_sizes = (h, w, padded.shape[-2], padded.shape[-1])
    return (padded, *rest)


def _crop_output(module, args, output):  # noqa: ARG001
    h, w, ph, pw = module._window_padding_sizes
    # The output/input ratio is read off the result: BasicSR's SwinIR keeps ``upscale`` (default 2)
    # even without an upsampler, where the output has the input's size.
    sh, sw = output.shape[-2] // ph, output.shape[-1] // pw
    return output[..., :h * sh, :w * sw]


def add_window_padding(net):
    """Make ``net``'s forward reflect-pad to its window multiple and crop back (in place).

    Does nothing for a network that needs no padding, and nothing the second time.

    Args:
        net (nn.Module): A built network (not wrapped in DataParallel / DDP).

    Returns:
        nn.Module: ``net`` itself.
    """
    multiple = window_multiple(net)
    if multiple > 1 and getattr(net, _FLAG, None) is None:
        setattr(net, _FLAG, multiple)
        net.register_forward_pre_hook(_pad_input)
        net.register_forward_hook(_crop_output)
    return net
