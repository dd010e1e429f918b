"""M3SNet, a comparison baseline for the deblurring tables: "A Mountain-Shaped Single-Stage Network
for Accurate Image Restoration" (Gao, Yang, Zhang, Wang, Yang and Dang, arXiv 2305.05146).

The paper builds a single-stage U-Net of NAFBlocks (activation-free blocks, Fig. 4(b)/(c); we
import :class:`~ecma_basicsr.archs.nafnet_arch.NAFBlock` rather than re-implementing it) and adds:

* the feature fusion middleware (FFM, Fig. 4(a)): between the encoder and the decoder, each
  encoder level is fused with the adjacent deeper (lower-resolution) one, "sequentially down to
  the lowest layer", until "all information is fused into the original image resolution"
  (abstract). A fusion node upsamples the deeper feature (1x1 conv + PixelShuffle, as the U-Net's
  own upsampling), adds it to the shallower one and refines the sum with one NAFBlock. Two rows of
  nodes form the "mountain": with four levels, row 1 fuses (0,1), (1,2), (2,3) and row 2 fuses
  (0,1), (1,2) again on row-1 results; the decoder's skip at level 3 is the raw encoder feature,
  at level 2 the row-1 node and at levels 1 and 0 the row-2 nodes.
* the multi-head attention middle block (MHAMB, Fig. 4(d)) in place of the middle NAFBlocks: a
  multi-head self-attention whose attention map is taken across channels (C/h x C/h per head)
  so its cost is linear in the number of pixels (any image size works): 1x1 conv to Q, K, V,
  3x3 depthwise conv, L2-normalised Q and K, a learnable temperature per head, softmax, 1x1
  projection.

Our text of the paper has no equations or figure detail, so these facts were checked against the
authors' released model (github.com/Tombs98/M3SNet, read for facts only; this module is our own
code): eight heads, bias-free MHAMB convolutions, no normalisation or residual around MHAMB
(the decoder's upsampling consumes its output directly), and the NAFNet-GoPro U-Net (encoder
1,1,1,28, one middle block, decoder 1,1,1,1). With that structure the parameter counts are

=================  =====  ========  =========
variant            width  ours      published
=================  =====  ========  =========
GoPro-width32      32     16.73 M   16.73 M
GoPro-width64      64     66.36 M   66.36 M
=================  =====  ========  =========

One choice was left open by the paper and is an argument: the order of the second FFM row. The
released code visits the row left to right, so the level-0 node consumes the *row-1* level-1 node (level
3 never reaches level 0); that is the default, ``ffm_order='released'``, because the published
checkpoints and numbers come from it. The paper's words ("sequentially down to the lowest layer ...
finally all information is fused into the original image resolution") describe the deep-to-shallow
order, in which the level-0 node consumes the *row-2* level-1 node and therefore sees every level:
``ffm_order='sequential'`` (same parameters; a different function, so it needs its own training).

Compatibility with the authors' release (checked numerically against fixtures made with their code,
``tests/test_golden.py``):

* State-dict keys are theirs (``intro``, ``encoders``, ``middle_blks``, ``middle``, ``middle_ups``,
  ...). Their training script saves ``{'epoch', 'state_dict', 'optimizer'}`` with DataParallel's
  ``module.`` prefix: BasicSR loads it with ``param_key_g: state_dict`` (the prefix is dropped).
* ``M3SNet(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)`` and ``M3SNetLocal(...,
  train_size=(N, C, H, W), fast_imp=False)`` take their arguments. ``M3SNetLocal`` is the class their
  GoPro / HIDE test scripts use: every SCA pooling (encoder, decoder and FFM NAFBlocks) becomes TLC's
  local pooling, with the windows NAFNet's TLC sets (:func:`~ecma_basicsr.archs.nafnet_arch.tlc_windows`;
  256 x 256 training patches by default).
* Their forward zero-pads to a multiple of 16 and returns the padded result; ours crops it back to
  the input size (the values inside are the same).

Any H x W: the input is zero-padded to a multiple of ``2 ** len(enc_blk_nums)`` and cropped back.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ecma_basicsr.archs.arch_util import crop_to, pad_to_multiple
from ecma_basicsr.archs.nafnet_arch import NAFBlock, TLCMixin
from ecma_basicsr.archs.presets import Preset, resolve_preset
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin

__all__ = ['MHAMB', 'M3SNet', 'M3SNetLocal', 'PRESETS']

_GOPRO = dict(enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1])
_SOURCE = 'M3SNet (Gao et al.), GoPro models'
PRESETS = {
    'M3SNet-GoPro-width32': Preset('M3SNet', dict(width=32, **_GOPRO), params=16.73e6, source=_SOURCE),
    'M3SNet-GoPro-width64': Preset('M3SNet', dict(width=64, **_GOPRO), params=66.36e6, source=_SOURCE),
}


class MHAMB(nn.Module):
    """Multi-head attention middle block (Fig. 4(d)): channel-wise multi-head self-attention.

    Args:
        dim (int): Channels (a multiple of ``num_heads``).
        num_heads (int): Heads; each attends over ``dim / num_heads`` channels. Default: 8.
        bias (bool): Bias in the convolutions (False in the released model).
    """

    def __init__(self, dim, num_heads=8, bias=False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'MHAMB: dim ({dim}) must be a multiple of num_heads ({num_heads})')
        self.num_heads = num_heads
        # learnable softmax temperature per head; the dot products are cosines (|q| = |k| = 1)
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        # depthwise 3x3 gives Q, K, V local context before the global (channel) attention
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature  # (b, heads, c/h, c/h): linear in h*w
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


def _up(chan):
    """x2 upsampling that halves the channels: 1x1 conv to 2x channels, PixelShuffle(2)."""
    return nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2))


@ARCH_REGISTRY.register()
class M3SNet(TLCMixin, CheckedLoadMixin, nn.Module):
    """M3SNet: NAFBlock U-Net with feature fusion middleware (FFM) and an attention middle (MHAMB).

    Args:
        img_channel (int): Input / output channels. Default: 3.
        width (int): Channels of the first level (doubled at each downsampling).
        middle_blk_num (int): Number of MHAMBs at the lowest resolution.
        enc_blk_nums (list[int]): NAFBlocks per encoder level (at least two levels).
        dec_blk_nums (list[int]): NAFBlocks per decoder level (deepest first).
        num_heads (int): MHAMB heads. Default: 8.
        ffm_order (str): ``'released'`` (the authors' code, default) or ``'sequential'`` (the paper's
            wording); see the module docstring.
        variant (str | None): ``'GoPro-width32'`` or ``'GoPro-width64'`` (case-insensitive; the full
            names of :data:`PRESETS` work too); explicit keyword arguments override it. Without a variant
            the width-32 GoPro model is built (the authors' defaults).
        tlc (bool): TLC's local pooling in every SCA (what ``M3SNetLocal`` turns on).
        train_size (int | tuple): Training patch TLC refers to; ``(N, C, H, W)`` accepted. Default 256.
        tlc_ratio (float): TLC window / training patch. Default 1.5.
        fast_imp (bool): With TLC, the authors' approximate pooling (see ``nafnet_arch``).
    """

    def __init__(self, img_channel=3, width=None, middle_blk_num=None, enc_blk_nums=None, dec_blk_nums=None,
                 num_heads=8, ffm_order='released', variant=None, tlc=False, train_size=256, tlc_ratio=1.5,
                 fast_imp=False):
        super().__init__()
        cfg = dict(PRESETS['M3SNet-GoPro-width32'].kwargs)
        if variant is not None:
            cfg.update(resolve_preset(PRESETS, variant, 'M3SNet variant', prefix='M3SNet-').kwargs)
        for k, v in dict(width=width, middle_blk_num=middle_blk_num, enc_blk_nums=enc_blk_nums,
                         dec_blk_nums=dec_blk_nums).items():
            if v is not None:
                cfg[k] = v
        levels = len(cfg['enc_blk_nums'])
        if levels != len(cfg['dec_blk_nums']):
            raise ValueError(f"enc_blk_nums {cfg['enc_blk_nums']} and dec_blk_nums {cfg['dec_blk_nums']} "
                             'must have the same length (one decoder level per encoder level).')
        if levels < 2:
            raise ValueError('M3SNet needs at least two encoder levels for its feature fusion middleware.')
        if ffm_order not in ('sequential', 'released'):
            raise ValueError(f"ffm_order must be 'released' or 'sequential', got '{ffm_order}'")
        self.in_channels, self.upscale = img_channel, 1
        self.ffm_order = ffm_order
        self.levels = levels
        self.width = cfg['width']
        self.enc_blk_nums = list(cfg['enc_blk_nums'])
        self.dec_blk_nums = list(cfg['dec_blk_nums'])
        self.middle_blk_num = cfg['middle_blk_num']

        chan = self.width
        self.intro = nn.Conv2d(img_channel, chan, 3, padding=1)
        self.ending = nn.Conv2d(chan, img_channel, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        for n in self.enc_blk_nums:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
            self.downs.append(nn.Conv2d(chan, chan * 2, 2, stride=2))
            chan *= 2
        self.middle_blks = nn.Sequential(*[MHAMB(chan, num_heads) for _ in range(self.middle_blk_num)])
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in self.dec_blk_nums:
            self.ups.append(_up(chan))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))

        # FFM nodes: row 1 for levels 0..L-2, then row 2 for levels 0..L-3 (one NAFBlock each and
        # an upsampler from the next deeper level). Flat lists keep the released key layout.
        rows = [list(range(levels - 1)), list(range(levels - 2))]
        self.middle, self.middle_ups = nn.ModuleList(), nn.ModuleList()
        for row in rows:
            for lvl in row:
                self.middle.append(nn.Sequential(NAFBlock(self.width * 2 ** lvl)))
                self.middle_ups.append(_up(self.width * 2 ** (lvl + 1)))
        self.padder_size = 2 ** levels
        self.train_size, self.tlc_ratio, self.fast_imp = train_size, tlc_ratio, bool(fast_imp)
        self.tlc = False
        self.set_tlc(tlc)

    def tlc_levels(self):
        """``[(blocks, level)]`` of every NAFBlock stage, FFM nodes included (level 0 = full resolution)."""
        levels = [(blocks, i) for i, blocks in enumerate(self.encoders)]
        levels += [(blocks, self.levels - 1 - j) for j, blocks in enumerate(self.decoders)]
        rows = list(range(self.levels - 1)) + list(range(self.levels - 2))
        levels += [(node, lvl) for node, lvl in zip(self.middle, rows)]
        return levels

    def _fuse(self, node, shallow, deep):
        return self.middle[node](shallow + self.middle_ups[node](deep))

    def ffm(self, encs):
        """Feature fusion middleware: returns the decoder skips, shallowest level first."""
        n1 = self.levels - 1
        row1 = [self._fuse(i, encs[i], encs[i + 1]) for i in range(n1)]
        skips = row1 + [encs[-1]]
        order = range(self.levels - 3, -1, -1) if self.ffm_order == 'sequential' else range(self.levels - 2)
        for i in order:
            # 'sequential': skips[i + 1] is already the row-2 node when i + 1 has one (deep to shallow);
            # 'released': it is still the row-1 node when visited left to right
            deeper = skips[i + 1] if self.ffm_order == 'sequential' else row1[i + 1]
            skips[i] = self._fuse(n1 + i, row1[i], deeper)
        return skips

    def forward(self, inp):
        x_in, size = pad_to_multiple(inp, self.padder_size, mode='constant')
        x = self.intro(x_in)
        encs = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            encs.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(self.ffm(encs))):
            x = decoder(up(x) + skip)
        x = self.ending(x) + x_in
        return crop_to(x, size)

    def config_summary(self):
        return (f'M3SNet(width={self.width}, enc_blk_nums={self.enc_blk_nums}, middle_blk_num={self.middle_blk_num}, '
                f'dec_blk_nums={self.dec_blk_nums}, ffm_order={self.ffm_order!r})')


@ARCH_REGISTRY.register()
class M3SNetLocal(M3SNet):
    """``M3SNet`` with TLC switched on: the authors' test-time class (their GoPro / HIDE test script).

    Takes their arguments (``train_size=(N, C, H, W)``, default 256 x 256, and ``fast_imp``) besides ours.
    """

    def __init__(self, *args, tlc=True, **kwargs):
        super().__init__(*args, tlc=tlc, **kwargs)
