"""Every registered network, as cases for the one parametrized test in ``test_archs.py``.

``TINY``: a small config for forward/backward/odd sizes (CPU-fast). Add a network here when you add
its ``*_arch.py``. Published configurations and their parameter counts are the arch files'
``PRESETS`` tables (``test_archs.py`` checks them).
"""
from dataclasses import dataclass, field


@dataclass
class Case:
    arch: str
    kwargs: dict = field(default_factory=dict)
    scale: int = 1
    in_ch: int = 3
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


# --- NAFNet, IMDN, GRL (comparison networks I) ---
_GRL_TINY = dict(embed_dim=16, depths=[4], num_heads_window=2, num_heads_stripe=2, window_size=4,
                 stripe_size=[4, 8], anchor_window_down_factor=2)
TINY += [
    Case('NAFNet', dict(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1])),
    Case('NAFNet', dict(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1], tlc=True, train_size=16)),
    Case('NAFNetLocal', dict(width=8, enc_blk_nums=[1], middle_blk_num=1, dec_blk_nums=[1], train_size=(1, 3, 8, 8))),
    Case('NAFNetSR', dict(up_scale=2, width=8, num_blks=2), scale=2),
    Case('NAFNetSR', dict(up_scale=4, width=8, num_blks=2, drop_path_rate=0.1), scale=4),
    Case('IMDN', dict(nf=16, num_modules=2, upscale=3), scale=3),
    Case('IMDN', dict(nf=16, num_modules=2, upscale=4), scale=4),
    Case('GRL', dict(upscale=1, local_connection=True, **_GRL_TINY)),
    Case('GRL', dict(upscale=2, upsampler='pixelshuffle', **_GRL_TINY), scale=2),
    Case('GRL', dict(upscale=3, upsampler='pixelshuffledirect', **_GRL_TINY), scale=3),
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
