"""The demo shows its result: one side-by-side crop per held-out photo, labelled with each PSNR."""
import cv2
import numpy as np
import torch
from helpers import smooth_image

from ecma_basicsr.archs.ecma_arch import ECMASR
from ecma_basicsr.demo import evaluate


def test_evaluate_writes_side_by_side_crops(tmp_path):
    from basicsr.utils.matlab_functions import imresize
    root = tmp_path / 'DIV2K'
    (root / 'DIV2K_valid_HR').mkdir(parents=True)
    (root / 'DIV2K_valid_LR_bicubic' / 'X4').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem in ('chelsea', 'coffee'):
        hr = smooth_image(rng, 64, 80)
        lr = np.clip(np.round(imresize(hr.astype(np.float64) / 255., 0.25) * 255), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / 'DIV2K_valid_HR' / f'{stem}.png'), hr)
        cv2.imwrite(str(root / 'DIV2K_valid_LR_bicubic' / 'X4' / f'{stem}x4.png'), lr)
    opt = dict(type='ECMASR', upscale=4, width=8, enc_blocks=[1, 1], kernels=[8, 4])
    torch.manual_seed(0)
    torch.save({'params': ECMASR(4, width=8, enc_blocks=(1, 1), kernels=(8, 4)).state_dict()}, tmp_path / 'w.pth')
    scores, figures = evaluate(str(tmp_path / 'w.pth'), opt, str(root), out_dir=str(tmp_path))
    assert set(scores) == {'ECMA-SR (demo)', 'bicubic'}
    assert [p.rsplit('/', 1)[-1] for p in figures] == ['compare_chelsea.png', 'compare_coffee.png']
    fig = cv2.imread(figures[0])
    assert fig.shape == (64 * 2 + 22, 3 * 64 * 2 + 2 * 4, 3)
    assert evaluate(str(tmp_path / 'w.pth'), opt, str(root)) == scores  # without out_dir: the scores alone
