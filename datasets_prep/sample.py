"""Offline sample sets in the real datasets' layouts, from the photographs scikit-image ships.

``python -m datasets_prep sample --task sr --dst datasets/DIV2K`` writes a DIV2K-shaped sample (the
same LMDB names and keys, smaller sub-images) so that an option file written for DIV2K runs
unchanged; ``--like`` picks another layout (``gopro``, ``hide``, ``realblur_j``, ``realblur_r``,
``reds``, ``sidd``, ``set5`` ... ``manga109``). Defaults: sr -> div2k, deblur -> gopro, denoise -> sidd.

How: the photographs (astronaut, rocket, hubble_deep_field, immunohistochemistry, retina and the
two stereo_motorcycle views for training; chelsea and coffee held out for testing; long side
reduced to at most 512 px) are degraded with the task's real pipeline and written as a source
tree in the *archive's* layout, which is then prepared by the very same subcommand a real
download goes through. So the sample exercises the real preparation code, and its layout cannot
drift from the real one.

Degradations:
    sr: none here; the preparation makes the LR images with MATLAB bicubic, as for DIV2K.
    denoise: additive Gaussian noise, sigma ``--sigma`` (default 25 grey levels), ``--seed``
        (default 0), rounded and clipped to uint8 as a PNG must be.
    deblur: a random motion-blur kernel per frame (a smooth random trajectory of 6-16 px drawn
        into a 21x21 kernel, seeded), applied by 2-D convolution with reflected borders; REDS
        frames are additionally JPEG-compressed (quality 75), as in its blur+JPEG track.
"""
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np

from .commands import COMMANDS
from .common import PrepError, crop_positions, note, write_png_atomic

TRAIN_PHOTOS = ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'motorcycle_left',
                'motorcycle_right')
TEST_PHOTOS = ('chelsea', 'coffee')
DEFAULT_LIKE = {'sr': 'div2k', 'deblur': 'gopro', 'denoise': 'sidd'}
# layout -> task, for every dataset command that has a sample (``sample=(task, like)`` in its entry)
TASK_OF = {c.sample[1]: c.sample[0] for c in COMMANDS.values() if c.sample}
SR_LIKE = tuple(like for like, task in TASK_OF.items() if task == 'sr')
PARTIAL_MARKER = '.SAMPLE.partial.json'  # dst is a sample still being written; SAMPLE.json replaces it when done


def _write_json_atomic(path, data):
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def load_photo(name, max_side=512):
    """One scikit-image photograph as BGR uint8, long side reduced to ``max_side`` (INTER_AREA)."""
    from skimage import data
    if name in ('motorcycle_left', 'motorcycle_right'):
        rgb = data.stereo_motorcycle()[0 if name == 'motorcycle_left' else 1]
    else:
        rgb = getattr(data, name)()
    img = np.ascontiguousarray(rgb[:, :, :3][:, :, ::-1])
    h, w = img.shape[:2]
    if max(h, w) > max_side:
        f = max_side / max(h, w)
        img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return img


def motion_kernel(rng, size=21):
    """A normalised motion-blur kernel: a smooth random 2-D trajectory rasterised with bilinear weights."""
    length = rng.uniform(6, 16)
    steps = 64
    angle = rng.uniform(0, 2 * np.pi)
    # The direction drifts smoothly, so the path is a gentle curve like camera shake, not a jitter.
    turn = np.cumsum(rng.normal(0, 0.08, steps))
    dirs = angle + turn
    pts = np.cumsum(np.stack([np.cos(dirs), np.sin(dirs)], 1) * (length / steps), 0)
    pts -= pts.mean(0)
    pts += (size - 1) / 2
    kernel = np.zeros((size, size), np.float64)
    for x, y in pts:
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                kernel[y0 + dy, x0 + dx] += wgt
    return kernel / kernel.sum()


def blur(img, kernel):
    """Convolve (not correlate) each channel with ``kernel``; reflected borders; uint8 out."""
    out = cv2.filter2D(img.astype(np.float32), -1, kernel[::-1, ::-1].astype(np.float32),
                       borderType=cv2.BORDER_REFLECT)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def add_noise(img, sigma, rng):
    noisy = img.astype(np.float64) + rng.normal(0.0, sigma, img.shape)
    return np.clip(np.floor(noisy + 0.5), 0, 255).astype(np.uint8)


def _write(path, img):
    write_png_atomic(path, img)


def _write_jpg(path, img, quality=75):
    os.makedirs(osp.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PrepError(f'could not encode {path} as JPEG.')
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


class _Frames:
    """Blurred frames: ``(sharp, blurry)`` per photo and frame, each with its own seeded kernel."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, img):
        return img, blur(img, motion_kernel(self.rng))


# ----------------------------------------------------------------------------- source builders
def _src_div2k(src, train, test, **_):
    for i, (_, img) in enumerate(train, 1):
        _write(osp.join(src, 'DIV2K_train_HR', f'{i:04d}.png'), img)
    for i, (_, img) in enumerate(test, 801):
        _write(osp.join(src, 'DIV2K_valid_HR', f'{i:04d}.png'), img)


def _src_srset(src, train, test, **_):
    for name, img in test:
        _write(osp.join(src, 'HR', f'{name}.png'), img)


def _src_gopro(src, train, test, frames, seed, **_):
    make = _Frames(seed)
    for split, photos, base in (('train', train, 9000), ('test', test, 9500)):
        for i, (_, img) in enumerate(photos):
            for f in range(frames):
                sharp, blurry = make(img)
                stem = f'GOPR{base + i:04d}_11_00-{f + 1:06d}'
                _write(osp.join(src, split, 'input', stem + '.png'), blurry)
                _write(osp.join(src, split, 'target', stem + '.png'), sharp)


def _src_hide(src, train, test, frames, seed, **_):
    make = _Frames(seed)
    root = osp.join(src, 'HIDE_dataset')
    for i, (_, img) in enumerate(test):
        for f in range(frames):
            sharp, blurry = make(img)
            name = f'{f + 1}fromGOPR{1000 + i:04d}.MP4.png'
            sub = 'test-close-ups' if (i + f) % 2 == 0 else 'test-long-shot'
            _write(osp.join(root, 'GT', name), sharp)
            _write(osp.join(root, 'test', sub, name), blurry)


def _src_realblur(src, train, test, frames, seed, variant, **_):
    from .realblur import FOLDERS
    make = _Frames(seed)
    folder = FOLDERS[variant]
    scene = 0
    for split, photos in (('train', train), ('test', test)):
        lines = []
        for _, img in photos:
            scene += 1
            for k in range(2, 2 + frames):
                sharp, blurry = make(img)
                gt_rel = f'{folder}/scene{scene:03d}/gt/gt_{k}.png'
                blur_rel = f'{folder}/scene{scene:03d}/blur/blur_{k}.png'
                _write(osp.join(src, gt_rel), sharp)
                _write(osp.join(src, blur_rel), blurry)
                lines.append(f'{gt_rel} {blur_rel} ')
        # The official lists end without a newline (and without the trailing space) on the last line.
        text = '\n'.join(lines).rstrip()
        with open(osp.join(src, f'RealBlur_{variant}_{split}_list.txt'), 'w') as f:
            f.write(text)


def _src_reds(src, train, test, frames, seed, **_):
    make = _Frames(seed)
    for split, photos, n_frames in (('train', train, frames), ('val', test, 20)):
        for clip, (_, img) in enumerate(photos):
            for f in range(n_frames):
                sharp, blurry = make(img)
                _write(osp.join(src, split, f'{split}_sharp', f'{clip:03d}', f'{f:08d}.png'), sharp)
                _write_jpg(osp.join(src, split, f'{split}_blur_jpeg', f'{clip:03d}', f'{f:08d}.jpg'), blurry)


def _src_sidd(src, train, test, sigma, seed, block=256, **_):
    from scipy.io import savemat
    rng = np.random.default_rng(seed)
    data = osp.join(src, 'SIDD_Medium_Srgb', 'Data')
    for i, (_, img) in enumerate(train, 1):
        scene = osp.join(data, f'{i:04d}_{i:03d}_S6_00100_00060_3200_L')
        for idx in ('010', '011'):
            _write(osp.join(scene, f'{i:04d}_GT_SRGB_{idx}.PNG'), img)
            _write(osp.join(scene, f'{i:04d}_NOISY_SRGB_{idx}.PNG'), add_noise(img, sigma, rng))
    gts, noisys = [], []
    for _, img in test:
        h, w = img.shape[:2]
        blocks = [img[y:y + block, x:x + block] for y in crop_positions(h, block, block)
                  for x in crop_positions(w, block, block)][:4]
        gts.append(np.stack([b[:, :, ::-1] for b in blocks]))  # the .mat files hold RGB
        noisys.append(np.stack([add_noise(b, sigma, rng)[:, :, ::-1] for b in blocks]))
    n = min(len(g) for g in gts)
    savemat(osp.join(src, 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': np.stack([g[:n] for g in gts])})
    savemat(osp.join(src, 'ValidationNoisyBlocksSrgb.mat'),
            {'ValidationNoisyBlocksSrgb': np.stack([g[:n] for g in noisys])})


def make_sample(task, dst, like=None, crop=None, step=None, sigma=25.0, seed=0, frames=2, workers=1,
                train_photos=TRAIN_PHOTOS, test_photos=TEST_PHOTOS, max_side=512):
    """Build a sample set for ``task`` in the layout of dataset ``like`` (see the module docstring).

    Args:
        task (str): 'sr', 'deblur' or 'denoise'.
        dst (str): Output folder, e.g. ``datasets/DIV2K``.
        like (str | None): Dataset layout to produce; default per task.
        crop, step (int | None): Sub-image size/stride for the LMDB crops (defaults: 288/144 for
            DIV2K, divisible by 2, 3 and 4 and >= a 256 training patch; 256/128 for GoPro/SIDD).
        sigma (float): Noise level in grey levels (denoise).
        seed (int): Seed of the noise and the blur kernels.
        frames (int): Blurred frames per photograph (deblur).
        workers (int): Processes for the preparation step.
        train_photos, test_photos (tuple[str]): scikit-image photograph names.
        max_side (int): Long side limit of the photographs.
    """
    if task not in DEFAULT_LIKE:
        raise PrepError(f"--task must be one of {', '.join(DEFAULT_LIKE)}, got '{task}'.")
    like = (like or DEFAULT_LIKE[task]).lower()
    if TASK_OF.get(like) != task:
        valid = [k for k, t in TASK_OF.items() if t == task]
        raise PrepError(f"--like {like} is not a {task} dataset; choose one of {', '.join(valid)}.")
    done, partial = osp.join(dst, 'SAMPLE.json'), osp.join(dst, PARTIAL_MARKER)
    markers = [p for p in (done, partial) if osp.isfile(p)]
    if osp.isdir(dst) and os.listdir(dst) and not markers:
        # Finished outputs are skipped, so a sample written over real data would silently mix the two.
        raise PrepError(f"'{dst}' already holds data that is not a sample (no SAMPLE.json); choose another --dst.")
    if markers:
        with open(markers[0]) as f:
            previous = json.load(f).get('sample_of')
        if previous != like:
            raise PrepError(f"'{dst}' holds a {previous} sample; a {like} sample needs another --dst.")
    train = [(n, load_photo(n, max_side)) for n in train_photos]
    test = [(n, load_photo(n, max_side)) for n in test_photos]
    parent = osp.dirname(osp.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    if not osp.isfile(done):
        # Marks dst as an unfinished sample before anything is written into it, so that a run killed
        # midway is resumed by the next one (finished outputs are kept, partial ones rebuilt).
        _write_json_atomic(partial, {'sample_of': like, 'task': task})
    # The source tree has a fixed name beside dst, so a killed run's tree is found and removed.
    src = osp.join(parent, f'.sample_source_{osp.basename(osp.abspath(dst))}')
    from . import common
    common.QUIET_COUNTS = True
    try:
        if osp.exists(src):
            shutil.rmtree(src)
        os.makedirs(src)
        kw = dict(train=train, test=test, frames=frames, seed=seed, sigma=sigma)
        if like == 'div2k':
            from .sr import prep_div2k
            _src_div2k(src, **kw)
            prep_div2k(src, dst, crop=crop or 288, step=step or 144, workers=workers)
        elif like in SR_LIKE:
            from .sr import SR_SETS, prep_srbench_set
            name = next(n for n in SR_SETS if n.lower() == like)
            _src_srset(src, **kw)
            prep_srbench_set(src, dst, name, workers=workers)
        elif like == 'gopro':
            from .gopro import prep_gopro
            _src_gopro(src, **kw)
            prep_gopro(src, dst, crop=crop or 256, step=step or 128, workers=workers)
        elif like == 'hide':
            from .hide import prep_hide
            _src_hide(src, **kw)
            prep_hide(src, dst, workers=workers)
        elif like in ('realblur_j', 'realblur_r'):
            from .realblur import prep_realblur
            variant = like[-1].upper()
            _src_realblur(src, variant=variant, **kw)
            prep_realblur(src, dst, variant, workers=workers)
        elif like == 'reds':
            from .reds import prep_reds
            _src_reds(src, **kw)
            prep_reds(src, dst, workers=workers)
        else:
            from .sidd import prep_sidd
            _src_sidd(src, **kw)
            prep_sidd(src, dst, crop=crop or 256, step=step or 128, workers=workers)
    finally:
        common.QUIET_COUNTS = False
        shutil.rmtree(src, ignore_errors=True)
    info = {'sample_of': like, 'task': task, 'train_photos': list(train_photos), 'test_photos': list(test_photos),
            'max_side': max_side, 'seed': seed, 'degradation': {
                'sr': 'MATLAB bicubic (datasets_prep.bicubic) at x2/x3/x4',
                'deblur': f'seeded random motion-blur kernels, {frames} frame(s) per photo' + (
                    ', JPEG quality 75' if like == 'reds' else ''),
                'denoise': f'additive Gaussian noise, sigma {sigma} grey levels'}[task]}
    _write_json_atomic(done, info)
    if osp.isfile(partial):
        os.remove(partial)
    note(f'sample ({task}, {like} layout) written to {dst}: a small stand-in built from scikit-image photographs, '
         'not the real dataset.')
