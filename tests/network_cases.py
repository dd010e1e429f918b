"""Every registered network, as cases for the one parametrized test in ``test_archs.py``.

``TINY``: a small config for forward/backward/odd sizes (CPU-fast).
``FULL``: the published configuration with its expected parameter count and tolerance;
these are only built (never run), so they stay cheap.
Add a network here when you add its ``*_arch.py``.
"""
from dataclasses import dataclass, field


@dataclass
class Case:
    arch: str
    kwargs: dict = field(default_factory=dict)
    scale: int = 1
    in_ch: int = 3
    # published params (count, relative tolerance); only for FULL cases
    params: float = None
    rtol: float = 0.03
    # multi-output networks: forward(x, return_all=True) returns every output; the backward
    # test then trains all of them (the full-resolution one is what validation sees)
    multi_output: bool = False

    @property
    def id(self):
        extra = ','.join(f'{k}={v}' for k, v in self.kwargs.items() if not isinstance(v, (list, tuple, dict)))
        return f'{self.arch}({extra})'


_ECMA_TINY = dict(width=8, enc_blocks=(1, 1, 1, 1), kernels=(8, 7, 5, 4), ffn_expand=2)

TINY = [
    Case('ECMA', dict(_ECMA_TINY, large_kernel_mode='fft')),
    Case('ECMA', dict(_ECMA_TINY, large_kernel_mode='spatial', in_ch=1), in_ch=1),
    Case('ECMASR', dict(upscale=2, width=8, enc_blocks=(1, 1), kernels=(8, 4), large_kernel_mode='fft'), scale=2),
    Case('ECMASR', dict(upscale=3, width=8, enc_blocks=(1, 1), kernels=(8, 4), large_kernel_mode='auto'), scale=3),
    Case('ECMASR', dict(upscale=4, width=8, enc_blocks=(1, 1), kernels=(8, 4)), scale=4),
]

FULL = [
    # ECMA paper, Table 1
    Case('ECMA', dict(variant='T'), params=10.5e6),
    Case('ECMA', dict(variant='S'), params=31.7e6),
    Case('ECMA', dict(variant='B'), params=19.5e6),
    Case('ECMASR', dict(upscale=4), scale=4, params=1.4e6),
]

# --- NAFNet, IMDN, GRL (comparison networks I) ---
_GRL_TINY = dict(embed_dim=16, depths=[4], num_heads_window=2, num_heads_stripe=2, window_size=4,
                 stripe_size=[4, 8], anchor_window_down_factor=2)
TINY += [
    Case('NAFNet', dict(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1])),
    Case('NAFNet', dict(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1], tlc=True, train_size=16)),
    Case('NAFNetLocal', dict(width=8, enc_blk_nums=[1], middle_blk_num=1, dec_blk_nums=[1], train_size=(1, 3, 8, 8))),
    Case('IMDN', dict(nf=16, num_modules=2, upscale=3), scale=3),
    Case('IMDN', dict(nf=16, num_modules=2, upscale=4), scale=4),
    Case('GRL', dict(upscale=1, local_connection=True, **_GRL_TINY)),
    Case('GRL', dict(upscale=2, upsampler='pixelshuffle', **_GRL_TINY), scale=2),
    Case('GRL', dict(upscale=3, upsampler='pixelshuffledirect', **_GRL_TINY), scale=3),
]
FULL += [
    Case('NAFNet', dict(variant='GoPro-width32'), params=17.11e6, rtol=0.01),
    Case('NAFNet', dict(variant='GoPro-width64'), params=67.89e6, rtol=0.01),
    Case('NAFNet', dict(variant='REDS-width64'), params=67.89e6, rtol=0.01),
    Case('NAFNet', dict(variant='SIDD-width32'), params=29.16e6, rtol=0.01),
    Case('NAFNet', dict(variant='SIDD-width64'), params=115.98e6, rtol=0.01),
    # IMDN paper: 694K / 703K / 715K parameters for x2 / x3 / x4.
    Case('IMDN', dict(upscale=2), scale=2, params=694e3, rtol=0.01),
    Case('IMDN', dict(upscale=3), scale=3, params=703e3, rtol=0.01),
    Case('IMDN', dict(upscale=4), scale=4, params=715e3, rtol=0.01),
    Case('GRL', dict(variant='T', upscale=4), scale=4, params=0.91e6, rtol=0.03),
    Case('GRL', dict(variant='S', upscale=4), scale=4, params=3.49e6, rtol=0.03),
    Case('GRL', dict(variant='B', upscale=4), scale=4, params=20.20e6, rtol=0.03),
    Case('GRL', dict(variant='T', upscale=1, task='denoise'), params=0.88e6, rtol=0.03),
    Case('GRL', dict(variant='S', upscale=1, task='denoise'), params=3.12e6, rtol=0.03),
    Case('GRL', dict(variant='B', upscale=1, task='denoise'), params=19.81e6, rtol=0.03),
    Case('GRL', dict(variant='B', upscale=1, task='deblur'), params=19.81e6, rtol=0.03),
]

# --- M3SNet, IRNeXt, Hi-IR (comparison networks II) ---
_HIIR_TINY = dict(depths=[1, 1], num_heads=2, patch_size=2, region_size=4)
TINY += [
    Case('M3SNet', dict(width=8, enc_blk_nums=[1, 1, 1], middle_blk_num=1, dec_blk_nums=[1, 1, 1], num_heads=2)),
    Case('M3SNet', dict(width=8, enc_blk_nums=[1, 1], middle_blk_num=2, dec_blk_nums=[1, 1], num_heads=2,
                        ffm_order='released')),
    Case('M3SNetLocal', dict(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1], num_heads=2,
                             train_size=(1, 3, 8, 8))),
    Case('IRNeXt', dict(width=8, num_blocks=2), multi_output=True),
    Case('HiIR', dict(upscale=2, embed_dim=12, **_HIIR_TINY), scale=2),
    Case('HiIR', dict(upscale=3, embed_dim=12, **_HIIR_TINY), scale=3),
    Case('HiIR', dict(upscale=1, embed_dim=8, depths=[1, 1, 1, 1], num_heads=2, patch_size=2, region_size=4)),
]
FULL += [
    # M3SNet: 16.73 / 66.36 M (GoPro, width 32 / 64)
    Case('M3SNet', dict(variant='GoPro-width32'), params=16.73e6, rtol=0.01),
    Case('M3SNet', dict(variant='GoPro-width64'), params=66.36e6, rtol=0.01),
    # IRNeXt: Table 6 (GoPro, 13.21 M), Table 13 (16 blocks = n 15 of Sec. 4, 14.76 M), Table 2 (dehazing, 5.46 M)
    Case('IRNeXt', dict(variant='gopro'), params=13.21e6, rtol=0.01),
    Case('IRNeXt', dict(variant='deblur'), params=14.76e6, rtol=0.01),
    Case('IRNeXt', dict(variant='dehaze'), params=5.46e6, rtol=0.01),
    # Hi-IR-B: Table 8 (SR x2 / x3 / x4: 14.68 / 14.87 / 14.83 M), Tables 6 and 9 (U-shape denoising: 22.33 M)
    Case('HiIR', dict(variant='B', upscale=2), scale=2, params=14.68e6, rtol=0.03),
    Case('HiIR', dict(variant='B', upscale=3), scale=3, params=14.87e6, rtol=0.03),
    Case('HiIR', dict(variant='B', upscale=4), scale=4, params=14.83e6, rtol=0.03),
    Case('HiIR', dict(variant='B', upscale=1), params=22.33e6, rtol=0.03),
]
