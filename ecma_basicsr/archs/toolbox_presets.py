"""Published configurations of comparison networks that BasicSR 1.4.2 itself registers.

SwinIR (Liang et al., ICCVW 2021), EDSR (Lim et al., CVPRW 2017) and RCAN (Zhang et al., ECCV 2018)
are BasicSR's own archs; their presets live here in the same :class:`~.presets.Preset` format as the
plugin's networks, so ``basicsr bench``, the tests and ``python -m ecma_basicsr.presets`` read one table.
"""
from .presets import Preset

_SWINIR = dict(in_chans=3, window_size=8, img_range=1.0, mlp_ratio=2.0, resi_connection='1conv')
PRESETS = {
    # SwinIR Table 3 lists 897K for the lightweight model; BasicSR's x4 build counts 929,628 (+3.6%, the x4
    # tail), hence the 4% tolerance. Table 2: classical x4, DIV2K-trained, patch 48: 11.9 M.
    'SwinIR-light-x4': Preset('SwinIR', dict(_SWINIR, upscale=4, img_size=64, embed_dim=60, depths=[6] * 4,
                                             num_heads=[6] * 4, upsampler='pixelshuffledirect'),
                              params=0.897e6, macs=63.6e9, macs_input=(720, 1280),
                              source='SwinIR Table 3; ECMA Table 5', scale=4, rtol=0.04),
    'SwinIR-x4': Preset('SwinIR', dict(_SWINIR, upscale=4, img_size=48, embed_dim=180, depths=[6] * 6,
                                       num_heads=[6] * 6, upsampler='pixelshuffle'),
                        params=11.9e6, source='SwinIR Table 2', scale=4, rtol=0.01),
    # EDSR baseline (16 blocks, 64 features): 1.5 M; ECMA Table 5 prints 114 G at 1280x720
    'EDSR-baseline-x4': Preset('EDSR', dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4,
                                            res_scale=1.0), params=1.5e6, macs=114e9, macs_input=(720, 1280),
                               source='EDSR paper; ECMA Table 5', scale=4),
    # RCAN: 10 groups x 20 blocks, 64 features; 15.6 M at x4
    'RCAN-x4': Preset('RCAN', dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_group=10, num_block=20, upscale=4),
                      params=15.6e6, source='RCAN paper', scale=4, rtol=0.01),
}
