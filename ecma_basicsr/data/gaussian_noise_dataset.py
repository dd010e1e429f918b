"""Synthetic denoising data: clean images in, (noisy, clean) pairs out.

The protocol of the colour/gray denoising tables (as in the GRL / Hi-IR papers and FFDNet): additive
Gaussian noise of standard deviation ``sigma / 255`` on images in [0, 1], **not clipped**, so the
noisy input is what the published numbers were measured on. For testing, the noise of image i is
drawn from ``numpy.random.seed(seed)`` set before that image (the FFDNet/KAIR convention the
reference figures of the published networks were checked with), so every run and every network
sees the same noisy images. For training, every sample gets a fresh draw (random crop + flips/
rotations as BasicSR's ``PairedImageDataset``).

Options: ``dataroot_gt`` (folder or LMDB of clean images), ``io_backend``, ``sigma`` (grey
levels), ``seed`` (test phase, default 0), ``color`` ('y' for gray networks on colour images,
or ``in_ch: 1`` to read images as gray), and the training keys ``gt_size``, ``use_hflip``,
``use_rot``.
"""
import numpy as np
from basicsr.data.data_util import paths_from_folder, paths_from_lmdb
from basicsr.data.transforms import augment
from basicsr.utils import FileClient, bgr2ycbcr, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data


def add_gaussian_noise(img, sigma, rng):
    """``img`` (float32, [0, 1]) plus N(0, sigma/255), unclipped, drawn from ``rng``."""
    return (img + rng.normal(0.0, sigma / 255.0, img.shape)).astype(np.float32)


def random_crop(img, size, path):
    h, w = img.shape[:2]
    if h < size or w < size:
        raise ValueError(f'{path}: image {h}x{w} is smaller than gt_size {size}; lower datasets:train:gt_size.')
    top, left = np.random.randint(0, h - size + 1), np.random.randint(0, w - size + 1)
    return img[top:top + size, left:left + size]


@DATASET_REGISTRY.register()
class GaussianNoiseDataset(data.Dataset):
    """Clean images -> (noisy lq, clean gt) with additive Gaussian noise (see module docstring)."""

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        if 'sigma' not in opt:
            raise ValueError(f"GaussianNoiseDataset '{opt.get('name')}' needs a 'sigma' (noise std in grey levels).")
        self.sigma = float(opt['sigma'])
        self.io_backend_opt = dict(opt['io_backend'])
        self.file_client = None
        root = opt['dataroot_gt']
        if self.io_backend_opt['type'] == 'lmdb':
            self.io_backend_opt['db_paths'] = [root]
            self.io_backend_opt['client_keys'] = ['gt']
            self.paths = sorted(paths_from_lmdb(root))
        else:
            self.paths = sorted(paths_from_folder(root))
        if not self.paths:
            raise ValueError(f"GaussianNoiseDataset: no images in dataroot_gt '{root}'.")

    def __getitem__(self, index):
        if self.file_client is None:
            opts = dict(self.io_backend_opt)
            self.file_client = FileClient(opts.pop('type'), **opts)
        path = self.paths[index]
        gray = self.opt.get('in_ch') == 1
        img = imfrombytes(self.file_client.get(path, 'gt'), flag='grayscale' if gray else 'color', float32=True)
        if gray:
            img = img[..., None]
        elif self.opt.get('color') == 'y':
            img = bgr2ycbcr(img, y_only=True)[..., None]
        else:  # the reference protocol draws the noise on the RGB, HWC image
            img = np.ascontiguousarray(img[..., ::-1])
        if self.opt['phase'] == 'train':
            img = random_crop(img, self.opt['gt_size'], path)
            img = augment(img, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
            # seeded from numpy's global generator, which BasicSR's worker seeding (and the
            # per-sample seeding of exact resume) controls, so training runs repeat exactly
            rng = np.random.default_rng(np.random.randint(2**31))
            noisy = add_gaussian_noise(img, self.sigma, rng)
        else:
            # The published protocol seeds numpy's global generator before every test image.
            noisy = add_gaussian_noise(img, self.sigma, np.random.RandomState(self.opt.get('seed', 0)))
        if img.ndim == 2:
            img, noisy = img[..., None], noisy[..., None]
        gt, lq = img2tensor([np.ascontiguousarray(img), np.ascontiguousarray(noisy)], bgr2rgb=False, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': path, 'gt_path': path}

    def __len__(self):
        return len(self.paths)
