"""``basicsr restore``: run a trained network over image files, the way a user applies it.

    basicsr restore options/table2_gopro/ECMA-B_GoPro_test.yml --input blurry/ --output restored/
    basicsr restore ECMA-T@experiments/ECMA-T_GoPro/models/net_g_latest.pth --input a.png --output out/
    basicsr restore ECMASR:upscale=4@ecma_sr_x4.pth --input lr/ --output sr/

The network is given as in ``basicsr bench`` (a preset, ``ARCH:key=value``, or an option file whose
``path:pretrain_network_g`` names the weights; ``@PATH`` overrides the weights). Images are read
as 8-bit (gray images are repeated to 3 channels for a colour network), restored one at a time
under ``torch.inference_mode`` and written as PNG with the input's name.
"""
import argparse
import os
import os.path as osp
import time

from ecma_basicsr.errors import UserError

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


class RestoreError(UserError):
    """Bad ``basicsr restore`` input (input path, image, weights); the message says the fix."""


def list_inputs(path):
    """The image files of ``path`` (a file or a folder), sorted; a clear error when there are none."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise RestoreError(f"--input '{path}' is neither an image file nor a folder.")
    files = sorted(osp.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise RestoreError(f"--input folder '{path}' holds no images ({', '.join(IMAGE_EXTS)}).")
    return files


def read_image(path, in_ch):
    import cv2
    import numpy as np
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE if in_ch == 1 else cv2.IMREAD_COLOR)
    if img is None:
        raise RestoreError(f"cannot read image '{path}' (unsupported or truncated file).")
    img = img.astype(np.float32) / 255.
    return img[..., None] if img.ndim == 2 else img


def main(argv=None):
    parser = argparse.ArgumentParser(prog='basicsr restore', description=__doc__.split('\n')[0])
    parser.add_argument('network', help='preset, ARCH:key=value or option file, with @WEIGHTS unless the '
                                        'option file names them')
    parser.add_argument('--input', required=True, help='an image file or a folder of images')
    parser.add_argument('--output', required=True, help='folder for the restored PNGs')
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default cpu)')
    args = parser.parse_args(argv)

    import torch
    from basicsr.utils import img2tensor, imwrite, tensor2img

    from ecma_basicsr.archs import fuse_for_inference
    from ecma_basicsr.bench.networks import build, parse_spec

    spec = parse_spec(args.network)
    if not spec.checkpoint:
        raise RestoreError(f"'{args.network}' names no weights: append @PATH (e.g. {args.network}@net_g_latest.pth) "
                         'or use an option file whose path:pretrain_network_g is set.')
    if not osp.isfile(spec.checkpoint):
        raise RestoreError(f"weights file '{spec.checkpoint}' does not exist.")
    files = list_inputs(args.input)
    net = fuse_for_inference(build(spec, args.device), inplace=True)
    os.makedirs(args.output, exist_ok=True)
    for path in files:
        img = read_image(path, spec.in_ch)
        start = time.perf_counter()
        with torch.inference_mode():
            x = img2tensor(img, bgr2rgb=img.shape[2] == 3, float32=True)[None].to(args.device)
            out = net(x).clamp_(0, 1)
        dest = osp.join(args.output, osp.splitext(osp.basename(path))[0] + '.png')
        imwrite(tensor2img(out, rgb2bgr=out.shape[1] == 3), dest)
        print(f'{path} -> {dest}  {tuple(img.shape[:2])} -> {tuple(out.shape[-2:])}  '
              f'{(time.perf_counter() - start) * 1000:.0f} ms', flush=True)
    return 0
