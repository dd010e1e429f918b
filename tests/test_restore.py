"""``basicsr restore`` end to end: weights in, restored PNGs out; clear errors."""
import cv2
import numpy as np
import torch
from helpers import run_cli

from ecma_basicsr.archs.ecma_arch import ECMASR

TINY = 'ECMASR:upscale=2,width=8,enc_blocks=[1,1],kernels=[8,4]'


def test_restore_folder_writes_upscaled_pngs(tmp_path):
    torch.manual_seed(0)
    net = ECMASR(2, width=8, enc_blocks=(1, 1), kernels=(8, 4))
    torch.save({'params': net.state_dict()}, tmp_path / 'w.pth')
    (tmp_path / 'in').mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / 'in' / 'a.png'), rng.integers(0, 256, (13, 17, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / 'in' / 'b.jpg'), rng.integers(0, 256, (8, 8), dtype=np.uint8))  # gray input
    res = run_cli(['restore', f'{TINY}@{tmp_path / "w.pth"}', '--input', str(tmp_path / 'in'),
                   '--output', str(tmp_path / 'out')], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    a = cv2.imread(str(tmp_path / 'out' / 'a.png'))
    assert a.shape == (26, 34, 3) and cv2.imread(str(tmp_path / 'out' / 'b.png')).shape == (16, 16, 3)
    # the written image is the network's output
    x = torch.from_numpy(cv2.imread(str(tmp_path / 'in' / 'a.png'))[:, :, ::-1].copy()).permute(2, 0, 1)[None] / 255.
    with torch.no_grad():
        ref = (net.eval()(x.float()).clamp(0, 1)[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
    assert np.abs(ref - a).max() <= 1


def test_restore_errors_are_clear(tmp_path):
    res = run_cli(['restore', TINY, '--input', str(tmp_path), '--output', str(tmp_path / 'o')], cwd=tmp_path)
    assert res.returncode == 1 and 'names no weights' in res.stderr
    torch.save({'params': ECMASR(4, width=8, enc_blocks=(1, 1), kernels=(8, 4)).state_dict()}, tmp_path / 'x4.pth')
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    res = run_cli(['restore', f'{TINY}@{tmp_path / "x4.pth"}', '--input', str(tmp_path / 'in'),
                   '--output', str(tmp_path / 'o')], cwd=tmp_path)
    assert res.returncode == 1 and 'upscale=4' in res.stderr
