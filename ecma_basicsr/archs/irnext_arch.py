"""IRNeXt (Cui et al., ICML 2023), a convolutional U-Net baseline for the deblurring tables.

"IRNeXt: Rethinking Convolutional Network Design for Image Restoration"; section and equation numbers
below are the paper's. Where the paper is silent or disagrees with the authors' released code
(github.com/c-yn/IRNeXt, ``Dehazing/*/models``, read for facts only), this module follows the release:
the published numbers and checkpoints come from it, and ``tests/test_golden.py`` checks this module
against fixtures made with it (max difference <= 1e-5, same parameters, the authors' state-dict keys).

* Sec. 3.1 / Fig. 3(a): a three-level U-shaped network of six CNNBlocks (widths C, 2C, 4C, C = 32)
  with multiple inputs and outputs. The image at 1/2 and 1/4 resolution (release: nearest-neighbour
  ``interpolate`` by 0.5, twice) enters the encoder through ``ConvS`` (Fig. 3(b); ``SCM`` in the
  release: 3x3, 1x1, 3x3, 1x1 convolutions with C'/4, C'/2, C'/2, C' channels, GELU between them and,
  from the release only, an affine InstanceNorm at the end), is concatenated with the downsampled
  features and merged by a 3x3 convolution. A 3x3 convolution plus the image skip after the first two
  decoder CNNBlocks gives the 1/4 and 1/2 predictions; the last one gives the full-resolution image.
  Every convolution of the trunk is followed by GELU except the merges and the outputs (release:
  also the first, shallow one), downsampling is a stride-2 3x3 convolution, upsampling a stride-2 4x4
  transposed convolution, skips are concatenated and reduced by a 1x1 convolution.
* Fig. 3(c): a CNNBlock is ``num_res`` residual blocks (3x3 conv, GELU, 3x3 conv); the last one holds
  the multi-scale module between its two convolutions (Table 13: "the number includes the last one").
* Sec. 3.2, Eq. 1-2, MSM: average pooling at rates 8, 4, 2, coarse to fine; each branch adds the
  previous one upsampled x2, applies a 3x3 convolution (bias-free) and LAM; all branches are upsampled
  to the input size and summed with it. Release: bilinear with ``align_corners=True``, GELU before the
  final (bias-free) 3x3 convolution.
* Sec. 3.3, Eq. 3-7, LAM (``dynamic_filter`` in the release): G = 8 groups of K x K = 3 x 3 weights
  from the globally pooled features through a 1x1 convolution and Tanh; the release inserts a
  BatchNorm before Tanh. The weights filter each K x K neighbourhood (reflection-padded) of every
  channel of their group. Filter modulation (Eq. 6-7) in the release: with ``W = 1 + inside_all``
  (channel-wise, 1 at initialisation) the low-pass part is approximated by the global mean,
  ``L = W * (X (*) A) - (W - 1) * GAP(X)``, and the output is ``lamb_l * L + (1 + lamb_h) * X`` with
  two more channel-wise scales initialised to 0 (so LAM starts as the identity).
* Sec. 3.4, Eq. 8-10: the dual-domain loss over the three outputs lives in
  :mod:`ecma_basicsr.losses.irnext_loss`.

The paper-only reading this module used before (no normalisation layers, average-pooled input
pyramid, no GELU on the shallow features, modulation of the high-pass weights) is not kept as an
option: its modules and parameters differ throughout, so it would be a second network.

Presets (:data:`PRESETS`, ``variant``), residual blocks per CNNBlock and parameters
(``python -m ecma_basicsr.presets --arch IRNeXt``):
``gopro`` 14 blocks, 13,205,641 (Table 6: 13.21 M); ``deblur`` 16 blocks, 14,755,721 (Table 13 / n = 15
of Sec. 4: 14.76 M); ``dehaze`` 4 blocks (the release's default), 5,455,241 (Table 2: 5.46 M).

Compatibility with the release: ``IRNeXt(num_res=4)`` is their constructor (width fixed at 32 there);
their checkpoints (``{'model': state_dict}`` in ``.pkl`` files) load with ``param_key_g: model``.
Outputs: built with their arguments (``IRNeXt()`` / ``IRNeXt(num_res=n)``) ``forward`` returns
``[out_1/4, out_1/2, out_full]`` in every mode, as theirs does. Built with ours (``variant`` or
``num_blocks``) it returns the full-resolution image in eval mode, which BasicSR validates, and the
list in training mode with ``return_all_train=True`` (the route for ``pixel_opt: {type: IRNeXtLoss}``).
``return_all_eval`` overrides the choice; ``forward(x, return_all=True)`` always gives the list.
``multi_output=False`` builds IRNeXt without the two low-resolution heads, for single-output losses.

Any H x W: the input is reflection-padded to a multiple of 32 (as the release's test script does;
replicate where an image is too small to reflect) and every output is cropped back.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ecma_basicsr.archs.arch_util import crop_to, pad_to_multiple
from ecma_basicsr.archs.presets import Preset, resolve_preset
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin

__all__ = ['DynamicFilter', 'MultiScaleModule', 'ResBlock', 'IRNeXt', 'PRESETS']

PRESETS = {
    'IRNeXt-gopro': Preset('IRNeXt', dict(num_blocks=14), params=13.21e6, macs=114.79e9, macs_input=(256, 256),
                           source='IRNeXt Table 6', scale=1),
    'IRNeXt-deblur': Preset('IRNeXt', dict(num_blocks=16), params=14.76e6, macs=129.33e9, macs_input=(256, 256),
                            source='IRNeXt Table 13', scale=1),
    'IRNeXt-dehaze': Preset('IRNeXt', dict(num_blocks=4), params=5.46e6, source='IRNeXt Table 2', scale=1),
}
_AUTHORS_NUM_RES = 4  # the release's default


def _pad_same(x, pad):
    """Reflection padding (the release's), replicate where a side is too short to reflect."""
    mode = 'reflect' if min(x.shape[-2:]) > pad else 'replicate'
    return F.pad(x, (pad, pad, pad, pad), mode=mode)


class ConvLayer(nn.Module):
    """Convolution (or stride-2 transposed convolution) with an optional GELU; ``BasicConv`` keys."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, act=True, transpose=False, bias=True):
        super().__init__()
        if transpose:  # k = 4, stride 2, padding 1: exactly twice the size
            conv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2 - 1, bias=bias)
        else:
            conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, bias=bias)
        self.main = nn.Sequential(conv, nn.GELU()) if act else nn.Sequential(conv)

    def forward(self, x):
        return self.main(x)


class DynamicFilter(nn.Module):
    """Local attention module with filter modulation (LAM, Sec. 3.3, Eq. 3-7), in the release's form.

    The 3x3 convolution of Eq. 3 is the branch convolution of :class:`MultiScaleModule` in front of it.

    Args:
        channels (int): Feature channels (a multiple of ``groups``).
        kernel_size (int): Aggregation region K. Default: 3.
        groups (int): Number of attention-weight groups G. Default: 8.
    """

    def __init__(self, channels, kernel_size=3, groups=8):
        super().__init__()
        if channels % groups:
            raise ValueError(f'IRNeXt LAM: channels ({channels}) must be a multiple of groups ({groups})')
        self.kernel_size, self.groups = kernel_size, groups
        self.conv = nn.Conv2d(channels, groups * kernel_size ** 2, 1, bias=False)  # Conv1x1 of Eq. 3
        self.bn = nn.BatchNorm2d(groups * kernel_size ** 2)
        nn.init.kaiming_normal_(self.conv.weight, mode='fan_out', nonlinearity='relu')  # the release's init
        self.lamb_l = nn.Parameter(torch.zeros(channels))
        self.lamb_h = nn.Parameter(torch.zeros(channels))
        self.inside_all = nn.Parameter(torch.zeros(channels, 1, 1))  # W - 1 of Eq. 6

    def forward(self, x):
        n, c, h, w = x.shape
        if self.training and n == 1:
            raise ValueError('IRNeXt cannot train on a batch of 1: LAM normalises its pooled features with '
                             "BatchNorm (as the authors' release does). Set datasets:train:batch_size_per_gpu >= 2.")
        k = self.kernel_size
        gap = x.mean((2, 3), keepdim=True)
        attn = torch.tanh(self.bn(self.conv(gap)))  # Eq. 3: (n, G*K*K, 1, 1)
        # one K x K filter per (sample, group), shared by the channels of the group
        filters = attn.view(n, self.groups, 1, k * k).expand(n, self.groups, c // self.groups, k * k)
        padded = _pad_same(x, k // 2)
        agg = F.conv2d(padded.reshape(1, n * c, *padded.shape[-2:]), filters.reshape(n * c, 1, k, k),
                       groups=n * c).view(n, c, h, w)
        low = agg * (self.inside_all + 1.0) - self.inside_all * gap
        return low * self.lamb_l.view(1, -1, 1, 1) + x * (self.lamb_h.view(1, -1, 1, 1) + 1.0)


class MultiScaleModule(nn.Module):
    """Multi-scale module (MSM, Sec. 3.2, Eq. 1-2; the release's ``DeepPoolLayer``).

    Args:
        channels (int): Feature channels.
        rates (tuple[int]): Average-pooling rates, coarsest first; each is half the previous.
        groups (int): LAM groups G.
        kernel_size (int): LAM region K.
    """

    def __init__(self, channels, rates=(8, 4, 2), groups=8, kernel_size=3):
        super().__init__()
        self.rates = tuple(rates)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in self.rates)
        self.dynas = nn.ModuleList(DynamicFilter(channels, kernel_size, groups) for _ in self.rates)
        self.relu = nn.GELU()  # the release's name
        self.conv_sum = nn.Conv2d(channels, channels, 3, padding=1, bias=False)  # Conv3x3 of Eq. 2

    def forward(self, x):
        size = x.shape[-2:]
        total, prev = x, None
        for rate, conv, dyna in zip(self.rates, self.convs, self.dynas):
            y = F.avg_pool2d(x, rate)
            if prev is not None:  # Eq. 1: the coarser branch, upsampled x2, joins this one
                y = y + F.interpolate(prev, size=y.shape[-2:], mode='bilinear', align_corners=True)
            prev = dyna(conv(y))
            total = total + F.interpolate(prev, size=size, mode='bilinear', align_corners=True)
        return self.conv_sum(self.relu(total))


class ResBlock(nn.Module):
    """Residual block of a CNNBlock (Fig. 3(c)); ``msm=True`` puts MSM between the convolutions."""

    def __init__(self, channels, msm=False, groups=8, kernel_size=3):
        super().__init__()
        self.main = nn.Sequential(
            ConvLayer(channels, channels, 3),
            MultiScaleModule(channels, groups=groups, kernel_size=kernel_size) if msm else nn.Identity(),
            ConvLayer(channels, channels, 3, act=False))

    def forward(self, x):
        return self.main(x) + x


class CNNBlock(nn.Module):
    """``num_blocks`` residual blocks, the last one with MSM (Table 13 convention; ``EBlock`` / ``DBlock``)."""

    def __init__(self, channels, num_blocks, groups=8, kernel_size=3):
        super().__init__()
        if num_blocks < 1:
            raise ValueError('IRNeXt: a CNNBlock needs at least one residual block (the MSM one)')
        self.layers = nn.Sequential(*[ResBlock(channels, msm=(i == num_blocks - 1), groups=groups,
                                               kernel_size=kernel_size) for i in range(num_blocks)])

    def forward(self, x):
        return self.layers(x)


class ConvS(nn.Module):
    """Shallow features of a downsampled input image (Fig. 3(b); the release's ``SCM``)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        q, h = max(1, out_channels // 4), max(1, out_channels // 2)
        self.main = nn.Sequential(
            ConvLayer(in_channels, q, 3), ConvLayer(q, h, 1), ConvLayer(h, h, 3),
            ConvLayer(h, out_channels, 1, act=False),
            nn.InstanceNorm2d(out_channels, affine=True))

    def forward(self, x):
        return self.main(x)


class FeatureMerge(nn.Module):
    """Concatenate the downsampled features with ConvS's and merge them by a 3x3 conv (the release's ``FAM``)."""

    def __init__(self, channels):
        super().__init__()
        self.merge = ConvLayer(channels * 2, channels, 3, act=False)

    def forward(self, x1, x2):
        return self.merge(torch.cat([x1, x2], dim=1))


@ARCH_REGISTRY.register()
class IRNeXt(CheckedLoadMixin, nn.Module):
    """IRNeXt: multi-input multi-output convolutional U-Net with MSM/LAM (ICML 2023).

    Args:
        num_res (int | None): The authors' argument: residual blocks per CNNBlock (MSM block included).
            Their default is 4; giving it (or nothing at all) also selects their output convention.
        variant (str | None): ``'gopro'`` (14 blocks, 13.21 M), ``'deblur'`` (16 blocks, 14.76 M) or
            ``'dehaze'`` (4 blocks, 5.46 M); full names of :data:`PRESETS` (``'IRNeXt-gopro'``) work too.
        in_channels (int): Image channels. Default: 3.
        width (int): Channels C of the first level (levels use C, 2C, 4C). Default: 32.
        num_blocks (int | None): Our name for ``num_res``; overrides the variant.
        groups (int): LAM groups G (Sec. 4). Default: 8.
        kernel_size (int): LAM region K (Sec. 4). Default: 3.
        return_all_train (bool): In training mode return ``[out_1/4, out_1/2, out_full]`` (for
            :class:`~ecma_basicsr.losses.irnext_loss.IRNeXtLoss`). Default: False, True with the
            authors' arguments.
        return_all_eval (bool | None): The same in eval mode. None: True with the authors' arguments,
            False with ours (see the module docstring).
        multi_output (bool): Build the 1/4 and 1/2 prediction heads (the paper's model). Default: True.
    """

    def __init__(self, num_res=None, variant=None, in_channels=3, width=32, num_blocks=None, groups=8, kernel_size=3,
                 return_all_train=None, return_all_eval=None, multi_output=True):
        super().__init__()
        authors = variant is None and num_blocks is None
        blocks = _AUTHORS_NUM_RES
        if variant is not None:
            blocks = resolve_preset(PRESETS, variant, 'IRNeXt variant', prefix='IRNeXt-').kwargs['num_blocks']
        for given in (num_res, num_blocks):
            if given is not None:
                blocks = given
        if num_res is not None and num_blocks is not None and num_res != num_blocks:
            raise ValueError(f'IRNeXt: num_res ({num_res}) and num_blocks ({num_blocks}) name the same setting; '
                             'give one of them.')
        if return_all_train is None:
            return_all_train = authors and multi_output
        if return_all_eval is None:
            return_all_eval = authors and multi_output
        if (return_all_train or return_all_eval) and not multi_output:
            raise ValueError('IRNeXt: return_all_train / return_all_eval need multi_output=True '
                             '(the low-resolution heads).')
        self.return_all_train, self.return_all_eval = bool(return_all_train), bool(return_all_eval)
        self.multi_output = multi_output
        self.in_channels, self.upscale = in_channels, 1
        self.width, self.num_blocks = width, blocks
        c1, c2, c3 = width, width * 2, width * 4
        # two U-Net downsamplings, then MSM pools the 1/4 level by 8 and upsamples x2 per branch
        self.pad_multiple = 4 * 8

        def cnn_block(chan):
            return CNNBlock(chan, blocks, groups, kernel_size)

        self.Encoder = nn.ModuleList([cnn_block(c1), cnn_block(c2), cnn_block(c3)])
        self.feat_extract = nn.ModuleList([
            ConvLayer(in_channels, c1, 3),  # the release's GELU after the shallow conv
            ConvLayer(c1, c2, 3, stride=2),
            ConvLayer(c2, c3, 3, stride=2),
            ConvLayer(c3, c2, 4, stride=2, transpose=True),
            ConvLayer(c2, c1, 4, stride=2, transpose=True),
            ConvLayer(c1, in_channels, 3, act=False),
        ])
        self.Decoder = nn.ModuleList([cnn_block(c3), cnn_block(c2), cnn_block(c1)])
        self.Convs = nn.ModuleList([ConvLayer(c3, c2, 1), ConvLayer(c2, c1, 1)])  # skip reductions
        if multi_output:
            self.ConvsOut = nn.ModuleList([ConvLayer(c3, in_channels, 3, act=False),
                                           ConvLayer(c2, in_channels, 3, act=False)])
        self.FAM1 = FeatureMerge(c3)
        self.SCM1 = ConvS(in_channels, c3)
        self.FAM2 = FeatureMerge(c2)
        self.SCM2 = ConvS(in_channels, c2)

    def forward(self, x, return_all=None):
        """Restore ``x`` (N, C, H, W) of any size.

        Args:
            x (Tensor): Degraded images.
            return_all (bool | None): ``True``: return ``[1/4, 1/2, full]`` predictions; ``False``:
                only the full-resolution one; ``None``: as set by ``return_all_train`` /
                ``return_all_eval`` for the current mode.
        """
        if return_all is None:
            return_all = self.return_all_train if self.training else self.return_all_eval
        if return_all and not self.multi_output:
            raise ValueError('IRNeXt was built with multi_output=False: there is only the full-resolution output.')
        inp, (h, w) = pad_to_multiple(x, self.pad_multiple, mode='reflect')
        inp2 = F.interpolate(inp, scale_factor=0.5)  # nearest, as the release
        inp4 = F.interpolate(inp2, scale_factor=0.5)

        res1 = self.Encoder[0](self.feat_extract[0](inp))
        res2 = self.Encoder[1](self.FAM2(self.feat_extract[1](res1), self.SCM2(inp2)))
        z = self.Encoder[2](self.FAM1(self.feat_extract[2](res2), self.SCM1(inp4)))

        z = self.Decoder[0](z)
        out4 = self.ConvsOut[0](z) + inp4 if return_all else None
        z = self.Decoder[1](self.Convs[0](torch.cat([self.feat_extract[3](z), res2], dim=1)))
        out2 = self.ConvsOut[1](z) + inp2 if return_all else None
        z = self.Decoder[2](self.Convs[1](torch.cat([self.feat_extract[4](z), res1], dim=1)))
        out1 = crop_to(self.feat_extract[5](z) + inp, (h, w))
        if not return_all:
            return out1
        # the low-resolution outputs cover the unpadded image: ceil(h / 2), ceil(h / 4) rows
        return [crop_to(out4, (-(-h // 4), -(-w // 4))), crop_to(out2, (-(-h // 2), -(-w // 2))), out1]

    def config_summary(self):
        return (f'IRNeXt(width={self.width}, num_res={self.num_blocks}, in_channels={self.in_channels}, '
                f'multi_output={self.multi_output})')

    def checkpoint_hint(self, state_dict):
        """Width and blocks per CNNBlock read off the checkpoint."""
        w = state_dict.get('feat_extract.0.main.0.weight')
        if w is None:
            return ('the checkpoint has no feat_extract.0.main.0.weight: it is not an IRNeXt checkpoint in the '
                    "authors' layout (weights trained before this module followed the release do not load).")
        blocks = 1 + max((int(k.split('.')[3]) for k in state_dict if k.startswith('Encoder.0.layers.')), default=0)
        heads = 'with' if 'ConvsOut.0.main.0.weight' in state_dict else 'without'
        return (f'the checkpoint looks like width={w.shape[0]}, num_res={blocks}, in_channels={w.shape[1]}, '
                f'{heads} the low-resolution heads.')
