"""``basicsr restore`` end to end: weights in, restored PNGs out; clear errors."""
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from helpers import run_cli, smooth_image

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


def _save_tiny(path, seed=0):
    torch.manual_seed(seed)
    net = ECMASR(2, width=8, enc_blocks=(1, 1), kernels=(8, 4))
    torch.save({'params': net.state_dict()}, path)
    return net.eval()


def test_restore_keeps_depth_channels_alpha_orientation_and_survives_bad_files(tmp_path):
    from PIL import Image
    net = _save_tiny(tmp_path / 'w.pth')
    d = tmp_path / 'in'
    d.mkdir()
    rng = np.random.default_rng(1)
    g16 = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    cv2.imwrite(str(d / 'g16.png'), g16)
    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    cv2.imwrite(str(d / 'rgba.png'), rgba)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: stored 8x12 shows as 12x8
    Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)).save(d / 'rot.jpg', exif=exif.tobytes())
    cv2.imwrite(str(d / 'x.png'), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    cv2.imwrite(str(d / 'x.jpg'), rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    (d / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
    out = tmp_path / 'out'
    res = run_cli(['restore', f'{TINY}@{tmp_path / "w.pth"}', '--input', str(d), '--output', str(out),
                   '--quiet'], cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    assert 'bad.png' in res.stderr and 'restored 5 of 6 images' in res.stderr
    g = cv2.imread(str(out / 'g16.png'), cv2.IMREAD_UNCHANGED)
    assert g.dtype == np.uint16 and g.shape == (20, 24)
    x = torch.from_numpy(np.repeat(g16[None, None].astype(np.float32) / 65535, 3, axis=1))
    with torch.no_grad():
        y = net(x).clamp(0, 1)[0].numpy()
    ref = np.round((y[0] * 0.299 + y[1] * 0.587 + y[2] * 0.114) * 65535)
    assert np.abs(ref - g).max() <= 2 and len(np.unique(g % 257)) > 1  # 16-bit detail, not 8-bit scaled
    a = cv2.imread(str(out / 'rgba.png'), cv2.IMREAD_UNCHANGED)
    assert a.shape == (18, 22, 4)
    assert np.array_equal(a[..., 3], cv2.resize(rgba[..., 3], (22, 18), interpolation=cv2.INTER_CUBIC))
    assert cv2.imread(str(out / 'rot.png')).shape == (24, 16, 3)
    assert cv2.imread(str(out / 'x_png.png')).shape == (16, 16, 3)
    assert cv2.imread(str(out / 'x_jpg.png')).shape == (12, 12, 3)
    assert sorted(p.name for p in out.iterdir()) == ['g16.png', 'rgba.png', 'rot.png', 'x_jpg.png', 'x_png.png']


def test_restore_tiled_output_matches_whole(tmp_path):
    _save_tiny(tmp_path / 'w.pth')
    cv2.imwrite(str(tmp_path / 'a.png'), smooth_image(np.random.default_rng(2), 70, 90))
    outs = []
    for tile in ('0', '32'):
        res = run_cli(['restore', f'{TINY}@{tmp_path / "w.pth"}', '--input', str(tmp_path / 'a.png'),
                       '--output', str(tmp_path / tile), '--tile', tile, '--tile-overlap', '16', '--batch', '2'],
                      cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append(cv2.imread(str(tmp_path / tile / 'a.png')).astype(np.float64))
    assert 'tiles 32/16 (20)' in res.stdout
    mse = np.mean((outs[0] - outs[1]) ** 2)
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) > 40


def test_restore_clear_errors_for_device_output_and_options(tmp_path):
    _save_tiny(tmp_path / 'w.pth')
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    base = ['restore', f'{TINY}@{tmp_path / "w.pth"}', '--input', str(tmp_path / 'a.png')]
    res = run_cli(base + ['--output', str(tmp_path / 'a.png')], cwd=tmp_path)
    assert res.returncode == 1 and 'is a file' in res.stderr and 'Traceback' not in res.stderr
    res = run_cli(base + ['--output', str(tmp_path / 'o'), '--tile', '16', '--tile-overlap', '16'], cwd=tmp_path)
    assert res.returncode == 1 and 'must be smaller than --tile' in res.stderr
    if not torch.cuda.is_available():
        res = run_cli(base + ['--output', str(tmp_path / 'o'), '--device', 'cuda'], cwd=tmp_path)
        assert res.returncode == 1 and 'no CUDA GPU' in res.stderr and 'Traceback' not in res.stderr
    res = run_cli(['restore', '--help'], cwd=tmp_path)
    assert res.returncode == 0 and 'ARCH:key=value' in res.stdout and 'ECMA-T@' in res.stdout


def test_out_of_memory_is_reported_per_image_and_the_rest_completes(tmp_path, monkeypatch, capsys):
    import ecma_basicsr.tiling as tiling
    from ecma_basicsr.restore import main
    _save_tiny(tmp_path / 'w.pth')
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'big.png'), np.zeros((24, 24, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'in' / 'small.png'), np.zeros((8, 8, 3), np.uint8))
    real = tiling.tiled_forward

    def fake(net, x, *args, **kwargs):
        if x.shape[-1] == 24:
            raise RuntimeError('CPU out of memory: tried to allocate 9 GB')
        return real(net, x, *args, **kwargs)

    monkeypatch.setattr(tiling, 'tiled_forward', fake)
    code = main([f'{TINY}@{tmp_path / "w.pth"}', '--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'o'),
                 '--tile', '0', '--quiet'])
    err = capsys.readouterr().err
    assert code == 1 and 'big.png: out of memory with the whole image (24x24)' in err and '--tile' in err
    assert (tmp_path / 'o' / 'small.png').exists() and not (tmp_path / 'o' / 'big.png').exists()


def test_output_conversion_by_bands_equals_whole_image_rounding():
    from ecma_basicsr.restore import from_network, to_image
    torch.manual_seed(0)
    for shape, channels in (((1, 3, 29, 11), 3), ((1, 3, 29, 11), 1), ((3, 1, 29, 11), 3), ((1, 1, 29, 11), 1)):
        out = torch.rand(shape) * 1.2 - 0.1  # values outside [0, 1] too
        for dtype in (np.uint8, np.uint16):
            peak = np.iinfo(dtype).max
            ref = np.clip(np.round(from_network(out, channels) * peak), 0, peak).astype(dtype)
            got = to_image(out, channels, np.dtype(dtype), band=7)
            assert got.dtype == dtype and np.array_equal(got, ref), (shape, channels, dtype)


def test_tiled_blend_weights_are_a_product_of_row_and_column_sums_and_a_pixelwise_net_comes_back_exactly():
    from ecma_basicsr.tiling import axis_weight_sum, ramp, tiled_forward, tiles_of
    for h, w, tile, overlap, scale in ((29, 41, 12, 4, 1), (30, 17, 10, 3, 2), (9, 50, 16, 5, 3)):
        summed = torch.zeros(h * scale, w * scale)  # the 2-D accumulator tiled_forward no longer keeps
        for y, x, th, tw in tiles_of(h, w, tile, overlap):
            wy = ramp(th * scale, y > 0, y + th < h, overlap * scale)
            wx = ramp(tw * scale, x > 0, x + tw < w, overlap * scale)
            summed[y * scale:(y + th) * scale, x * scale:(x + tw) * scale] += wy[:, None] * wx[None, :]
        product = axis_weight_sum(h, tile, overlap, scale)[:, None] * axis_weight_sum(w, tile, overlap, scale)
        assert torch.allclose(product, summed, rtol=1e-6, atol=0)
        img = torch.rand(2, 3, h, w)

        def net(t, s=scale):  # per pixel, so every tile's output is exactly the whole output's crop
            return F.interpolate(t * 2 - 1, scale_factor=s, mode='nearest')
        assert torch.allclose(tiled_forward(net, img, scale, tile, overlap, batch=2), net(img), atol=1e-6)


def test_auto_tile_leaves_room_for_the_output_buffers():
    from ecma_basicsr.tiling import auto_tile, output_bytes
    model = (100e6, 2000.0)  # fixed bytes, bytes per input pixel
    x = torch.empty(1, 3, 3000, 4000, device='meta')
    assert output_bytes(x, 4) == 3000 * 4000 * 16 * 3 * 4 + 0  # the float32 output, 3 channels
    plain = auto_tile(3000, 4000, 8 * 2**30, model)
    shared = auto_tile(3000, 4000, 8 * 2**30, model, out_bytes=output_bytes(x, 4, 3000 * 4000 * 16 * 3))
    assert 64 <= shared < plain
    fixed, per_px = model  # the forward and the buffers together stay within the budget (SAFETY included)
    assert (fixed + per_px * shared ** 2) * 1.5 + output_bytes(x, 4, 3000 * 4000 * 16 * 3) <= 8 * 2**30
    assert auto_tile(100, 100, 8 * 2**30, model, out_bytes=10 * 2**30) == 0  # the whole image holds no buffers


def test_fit_tile_shrinks_a_tile_whose_measured_forward_exceeds_the_budget():
    from ecma_basicsr.tiling import MIN_TILE, VERIFY_HEADROOM, auto_tile, fit_tile
    model = (0.0, 1000.0)  # the probes' fit: 1000 B per input pixel
    budget = 4 * 2**30
    calls = []

    def measure(th, tw):  # the real network needs 1.6x the fit, and more per pixel the larger the tile
        calls.append((th, tw))
        return 1600.0 * th * tw * (1 + th * tw / 4e7)

    predicted = auto_tile(3000, 4000, budget, model)
    tile, peak = fit_tile(3000, 4000, budget, model, measure)
    assert 0 < tile < predicted and tile % 8 == 0
    assert calls[0][0] * calls[0][1] <= predicted ** 2 / 2  # the first check is at half the area: it fits
    assert measure(*calls[0]) <= budget
    assert peak == measure(tile, tile) and peak * VERIFY_HEADROOM <= budget
    assert len(calls) <= 4
    # a small prediction is trusted without a measured forward
    assert fit_tile(200, 300, budget, model, measure) == (0, None)
    # a whole image measured too large is tiled, even when the probes said it fits
    tile, _ = fit_tile(1000, 1000, 2 * 2**30, (0.0, 700.0), lambda th, tw: 3000.0 * th * tw)
    assert MIN_TILE <= tile < 1000


def test_fit_tile_with_a_real_network_measures_its_forward():
    from ecma_basicsr.bench.networks import build, parse_spec
    from ecma_basicsr.tiling import fit_tile, measure_forward, memory_model
    net = build(parse_spec('ECMA-T:width=4,enc_blocks=[1,1,1,1]'), 'cpu').eval()
    model = memory_model(net, 3)
    measure = measure_forward(net, 3)
    peak = measure(128, 96)
    assert peak > 0
    tile, measured = fit_tile(512, 512, int(peak * 3), model, measure)  # a budget where 512x512 cannot fit
    assert 0 < tile < 512 and measured is not None


def test_restore_auto_tile_checks_once_per_size_within_the_budget_minus_held_memory(tmp_path, monkeypatch, capsys):
    """The command's wiring of fit_tile: the fit from the probes under-predicts 4x here, the budget is the
    whole process (held memory is subtracted), and a folder of same-sized images is checked once."""
    import re

    from ecma_basicsr import restore, tiling
    _save_tiny(tmp_path / 'w.pth')
    (tmp_path / 'in').mkdir()
    for name in ('a', 'b'):
        cv2.imwrite(str(tmp_path / 'in' / f'{name}.png'), smooth_image(np.random.default_rng(3), 256, 256))
    monkeypatch.setattr(tiling, 'memory_model', lambda *a, **k: (0.0, 1000.0))
    calls = []

    def measure_forward(*args, **kwargs):  # the network needs 4x what the probes' fit says
        return lambda th, tw: calls.append((th, tw)) or 4000.0 * th * tw

    monkeypatch.setattr(tiling, 'measure_forward', measure_forward)
    budget = 100 * 2**20
    tiles = {}
    for held in (0, 30 * 2**20):
        monkeypatch.setattr(tiling, 'held_memory', lambda device='cpu', held=held: held)
        calls.clear()
        out = tmp_path / f'out{held}'
        assert restore.main([f'{TINY}@{tmp_path / "w.pth"}', '--input', str(tmp_path / 'in'), '--output', str(out),
                             '--max-memory', str(budget), '--tile-overlap', '16', '--quiet']) == 0
        captured = capsys.readouterr()
        checked = re.findall(r'256x256: tile (\d+) checked', captured.err)
        assert len(checked) == 1 and len(calls) >= 2  # one check (half area, then the tile) for both images
        tile = int(checked[0])
        assert captured.out.count(f'tiles {tile}/16') == 2
        out_bytes = 1 * 4 * 512 * 512 * 4 + 512 * 512 * 3  # float output + weight accumulators, uint8 image
        assert 4000.0 * tile * tile * 1.2 + out_bytes + held <= budget
        assert cv2.imread(str(out / 'a.png')).shape == (512, 512, 3)
        tiles[held] = tile
    assert tiles[30 * 2**20] < tiles[0]
