"""``basicsr kernels``: W-bar of Eq. 2 clustered into a label map at image resolution (Fig. 5)."""
import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli, smooth_image

from ecma_basicsr.archs.ecma_arch import ECMA
from ecma_basicsr.kernels import KernelsError, collect_wbar, find_lam, label_map

KW = dict(width=8, enc_blocks=(1, 1), kernels=(16, 8))
SPEC = 'ECMA:width=8,enc_blocks=[1,1],kernels=[16,8]'


def _tiny_trained(steps=15):
    """A tiny ECMA trained for a few steps to denoise smooth images (its context branch is no longer at init)."""
    torch.manual_seed(0)
    net = ECMA(**KW)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        gt = torch.from_numpy(np.stack([smooth_image(rng, 32, 32) for _ in range(2)])).permute(0, 3, 1, 2) / 255.
        loss = (net(gt + 0.1 * torch.randn_like(gt)) - gt).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_wbar_is_sigma_times_w_and_labels_cover_the_image():
    net = _tiny_trained()
    img = smooth_image(np.random.default_rng(3), 37, 45).astype(np.float32) / 255.
    lam = find_lam(net, 'encoders.0', 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)))[None]
    _, feats = collect_wbar(net, x, lam)
    with torch.no_grad():  # W-bar at one pixel, by hand: sigma = W'(context) at that pixel times W
        sigma = {}
        h = lam.conv_ctx.register_forward_hook(lambda m, i, o: sigma.setdefault('s', o))
        net(x)
        h.remove()
    q = lam.conv_w.weight.shape[0]
    expect = (sigma['s'][0, :, 5, 7][:, None] * lam.conv_w.weight.reshape(q, 9)).reshape(-1)
    assert torch.allclose(feats[5, 7], expect)
    for stage in ('encoders.0', 'encoders.1', 'decoders.0'):
        labels, out = label_map(net, img, stage, 0, 1, k=4, seed=1)
        assert labels.shape == (37, 45) and labels.min() >= 0 and labels.max() < 4 and len(np.unique(labels)) > 1
        again, _ = label_map(net, img, stage, 0, 1, k=4, seed=1)
        assert np.array_equal(labels, again), 'deterministic for a fixed seed'
    assert out.shape == (1, 3, 37, 45)
    with pytest.raises(KernelsError, match='choose one of: encoders.0, encoders.1, decoders.0, decoders.1'):
        find_lam(net, 'middle', 0, 1)
    with pytest.raises(KernelsError, match='LAM 1..3'):
        find_lam(net, 'encoders.0', 0, 4)


def test_kernels_command_writes_the_figure(tmp_path):
    torch.save({'params': _tiny_trained(5).state_dict()}, tmp_path / 'w.pth')
    cv2.imwrite(str(tmp_path / 'a.png'), smooth_image(np.random.default_rng(4), 30, 40))
    res = run_cli(['kernels', f'{SPEC}@{tmp_path / "w.pth"}', '--image', str(tmp_path / 'a.png'), '--k', '3',
                   '--out', str(tmp_path / 'fig.png')], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert '30x40 label map' in res.stdout
    fig = cv2.imread(str(tmp_path / 'fig.png'))
    assert fig.shape[1] == 3 * 40 + 2 * 4 and fig.shape[0] > 30
