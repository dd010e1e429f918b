"""Tiled vs whole-image restoration on ../shared/data/DeepDeblur_examples (README, `basicsr restore`).

    PYTHONPATH=$PWD python benchmarks/tiled_vs_whole.py ECMA-T 384 64
    PYTHONPATH=$PWD python benchmarks/tiled_vs_whole.py NAFNet-GoPro-width32 384 32
    PYTHONPATH=$PWD python benchmarks/tiled_vs_whole.py race_run/options/race_denoise_ECMA.yml@WEIGHTS 384 64 --awgn 25

Arguments: a network spec (as in ``basicsr bench``, with ``@WEIGHTS`` for trained weights; without, seeded
random weights whose zero-initialised branch scales are drawn from N(0, 0.1) so every branch reaches the
output), the tile side and comma-separated overlaps. ``--awgn SIGMA`` feeds the sharp photo plus Gaussian
noise (seed 0, not clipped) instead of the blurred one, for a trained denoiser. Prints, per photo, the
whole-image PSNR against the sharp photo, the tiled PSNR, their difference and the PSNR of the tiled output
against the whole one.
"""
import argparse
import glob
import os.path as osp
import sys
import time

import cv2
import numpy as np
import torch
from basicsr.metrics import calculate_psnr

from ecma_basicsr.archs import fuse_for_inference
from ecma_basicsr.bench.networks import build, parse_spec
from ecma_basicsr.tiling import tiled_forward

ROOT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '..', 'shared', 'data', 'DeepDeblur_examples')


def to_uint8(out):
    return (out.clamp(0, 1)[0].numpy().transpose(1, 2, 0)[:, :, ::-1] * 255).round().astype(np.uint8)


def main(name, tile, overlaps, awgn=None):
    spec = parse_spec(name if '@' in name else name + '@none')
    torch.manual_seed(0)
    net = build(spec)
    if not spec.checkpoint:
        with torch.no_grad():
            for p in net.parameters():
                if p.abs().max() == 0 and p.numel() > 1:
                    p.normal_(0, 0.1)
    net = fuse_for_inference(net, inplace=True)
    for path in sorted(glob.glob(osp.join(ROOT, 'blur', '*.png'))):
        gt = cv2.imread(path.replace(f'{osp.sep}blur{osp.sep}', f'{osp.sep}sharp{osp.sep}'))
        img = cv2.imread(path).astype(np.float32) / 255
        if awgn:
            noise = np.random.RandomState(0).normal(0, awgn / 255, gt.shape)
            img = (gt.astype(np.float64) / 255 + noise).astype(np.float32)
        x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)))[None]
        start = time.time()
        with torch.inference_mode():
            whole = to_uint8(tiled_forward(net, x.contiguous(), spec.scale, 0, 0))
        pw = calculate_psnr(whole, gt, 0)
        print(f'{name} {osp.basename(path)} whole PSNR {pw:.3f} ({time.time() - start:.0f}s)', flush=True)
        for overlap in overlaps:
            start = time.time()
            with torch.inference_mode():
                tiled = to_uint8(tiled_forward(net, x.contiguous(), spec.scale, tile, overlap))
            pt = calculate_psnr(tiled, gt, 0)
            print(f'{name} {osp.basename(path)} tile {tile} overlap {overlap}: PSNR {pt:.3f} diff {pt - pw:+.4f} dB; '
                  f'tiled-vs-whole PSNR {calculate_psnr(tiled, whole, 0):.2f} ({time.time() - start:.0f}s)', flush=True)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('network')
    parser.add_argument('tile', type=int)
    parser.add_argument('overlaps', help='comma-separated')
    parser.add_argument('--awgn', type=float, default=None, help='noise sigma (grey levels) on the sharp photo')
    args = parser.parse_args(sys.argv[1:])
    main(args.network, args.tile, [int(o) for o in args.overlaps.split(',')], args.awgn)
