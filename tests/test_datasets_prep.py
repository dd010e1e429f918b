"""Tests of ``datasets_prep``: fake archive trees in each dataset's real layout go through the real
subcommands, and the results are read back with BasicSR's own ``PairedImageDataset`` (lmdb and disk
backends) and compared pixel for pixel with the sources. Also: the SR LR images against the
published ones in ``../shared/data``, an interrupted (SIGKILLed) run, ``verify`` catching damage,
LMDB map growth, bad images and wrong layouts reported by name, and the offline sample sets.

Images are tiny, and crop sizes are passed as options so the fakes stay small (the defaults are
the standard 480/512 values, checked separately).
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import cv2
import lmdb
import numpy as np
import pytest
from conftest import REPO, shared_path

from datasets_prep.__main__ import build_parser, main
from datasets_prep.bicubic import bicubic_downscale, mod_crop
from datasets_prep.commands import COMMANDS, command_for_path
from datasets_prep.common import PrepError, crop_positions
from datasets_prep.lmdb_writer import LmdbWriter, verify_lmdb_group


# ---------------------------------------------------------------------------------- helpers
def rand_img(rng, h, w):
    """Random image with some structure (so PNG and bicubic have something to do)."""
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def write(path, img):
    os.makedirs(osp.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(osp.splitext(path)[1] or '.png', img)
    assert ok
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


def imread(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None, path
    return img


def run_cli(*argv):
    return main([str(a) for a in argv])


def lmdb_images(path):
    """{key: decoded image} read straight from data.mdb, in meta_info.txt order."""
    out = {}
    with open(osp.join(path, 'meta_info.txt')) as f:
        keys = [line.split('.png ')[0] for line in f]
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        for key in keys:
            out[key] = cv2.imdecode(np.frombuffer(txn.get(key.encode()), np.uint8), cv2.IMREAD_COLOR)
    env.close()
    return out


def basicsr_pairs(lq, gt, backend, scale=1, tmpl='{}'):
    """Load every pair with BasicSR's PairedImageDataset; returns {name: (lq, gt)} as uint8 BGR."""
    from basicsr.data.paired_image_dataset import PairedImageDataset
    opt = {'dataroot_lq': str(lq), 'dataroot_gt': str(gt), 'io_backend': {'type': backend}, 'scale': scale,
           'phase': 'val', 'filename_tmpl': tmpl}
    ds = PairedImageDataset(opt)
    out = {}
    for i in range(len(ds)):
        item = ds[i]
        name = osp.splitext(osp.basename(item['gt_path']))[0]
        out[name] = tuple(np.round(item[k].numpy().transpose(1, 2, 0)[:, :, ::-1] * 255).astype(np.uint8)
                          for k in ('lq', 'gt'))
    return out


# ------------------------------------------------------------------------------- crops, bicubic
def test_crop_positions_follow_basicsr_extract_subimages():
    # DIV2K 0001 is 1356x2040: BasicSR's meta_info_DIV2K800sub_GT.txt lists 40 sub-images for it.
    hs, ws = crop_positions(1356, 480, 240), crop_positions(2040, 480, 240)
    assert hs == [0, 240, 480, 720, 876]
    assert ws == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert len(hs) * len(ws) == 40
    # GoPro 720x1280 with 512/256: 2x4 = 8 crops per image (16,824 for 2103 images).
    assert len(crop_positions(720, 512, 256)) * len(crop_positions(1280, 512, 256)) == 8
    with pytest.raises(PrepError, match='smaller than the crop size 512'):
        crop_positions(500, 512, 256, what='x.png')


def test_bicubic_is_basicsr_imresize_plus_matlab_uint8_rounding():
    from basicsr.utils.matlab_functions import imresize

    import ecma_basicsr  # noqa: F401
    rng = np.random.default_rng(0)
    img = rand_img(rng, 61, 47)
    for scale in (2, 3, 4):
        ref = imresize(img.astype(np.float64) / 255., 1 / scale) * 255
        ref = np.clip(np.floor(ref + 0.5), 0, 255)
        ours_float = bicubic_downscale(img, scale, matlab_uint8=False)
        assert ours_float.shape == ref.shape == (-(-61 // scale), -(-47 // scale), 3)
        # float32 (basicsr) vs float64 (ours) can only move a value sitting on .5 by one level
        assert np.abs(ours_float.astype(int) - ref).max() <= 1
        assert (ours_float == ref).mean() > 0.99
        ours = bicubic_downscale(mod_crop(img, scale), scale)
        assert ours.shape == (61 // scale, 47 // scale, 3) and ours.dtype == np.uint8


@pytest.mark.parametrize('name,subset', [('Set5', None), ('Set14', None), ('B100', 12)])
def test_sr_lr_images_match_the_published_ones(tmp_path, name, subset):
    """Our LR images against the standard LR images shipped in ../shared/data."""
    src = shared_path('data', name)
    if subset:
        # B100 has 100 images; a fixed subset of 12 keeps this test fast.
        stems = sorted(osp.splitext(n)[0] for n in os.listdir(osp.join(src, 'HR')))[:subset]
        link = tmp_path / 'src'
        for s in (2, 3, 4):
            (link / 'LR_bicubic' / f'X{s}').mkdir(parents=True)
            for stem in stems:
                os.symlink(osp.join(src, 'LR_bicubic', f'X{s}', f'{stem}x{s}.png'),
                           link / 'LR_bicubic' / f'X{s}' / f'{stem}x{s}.png')
        (link / 'HR').mkdir()
        for stem in stems:
            os.symlink(osp.join(src, 'HR', f'{stem}.png'), link / 'HR' / f'{stem}.png')
        src = str(link)
    dst = tmp_path / name
    assert run_cli(name.lower(), '--src', src, '--dst', dst, '--workers', 2) == 0
    for scale in (2, 3, 4):
        names = sorted(os.listdir(osp.join(src, 'HR')))
        for fname in names:
            stem = osp.splitext(fname)[0]
            ours = imread(str(dst / 'LR_bicubic' / f'X{scale}' / f'{stem}x{scale}.png'))
            ref = imread(osp.join(src, 'LR_bicubic', f'X{scale}', f'{stem}x{scale}.png'))
            assert ours.shape == ref.shape, (stem, scale)
            diff = np.abs(ours.astype(int) - ref)
            if name == 'B100':
                # The shipped B100 HR is a crop of the BSDS original and its LR was made from a larger
                # image: only a 2-pixel LR border can differ; everything inside must match.
                assert diff[2:-2, 2:-2].max() <= 1, (stem, scale)
            else:
                assert diff.max() <= 1, (stem, scale)
            gt = imread(str(dst / f'GTmod{scale}' / fname))
            assert gt.shape[:2] == (ref.shape[0] * scale, ref.shape[1] * scale)
    if name == 'Set14':
        # bridge.png is 1-channel in this copy; every output must be 3-channel for BasicSR.
        assert cv2.imread(osp.join(src, 'HR', 'bridge.png'), cv2.IMREAD_UNCHANGED).ndim == 2
        assert cv2.imread(str(dst / 'HR' / 'bridge.png'), cv2.IMREAD_UNCHANGED).shape[2] == 3
    # The option files' layout: HR + LR_bicubic/X4 with filename_tmpl '{}x4', through BasicSR.
    pairs = basicsr_pairs(dst / 'LR_bicubic' / 'X4', dst / 'HR', 'disk', scale=4, tmpl='{}x4')
    assert len(pairs) == len(os.listdir(osp.join(src, 'HR')))
    assert run_cli('verify', dst) == 0


# --------------------------------------------------------------------------------------- DIV2K
def test_div2k_lmdbs_pair_and_match_sources(tmp_path, capsys):
    rng = np.random.default_rng(1)
    src = tmp_path / 'DIV2K'
    hrs = {'0001': rand_img(rng, 72, 96), '0002': rand_img(rng, 86, 61)}  # 0002 is not a multiple of 12
    for stem, img in hrs.items():
        write(str(src / 'DIV2K_train_HR' / f'{stem}.png'), img)
    valid = rand_img(rng, 50, 62)
    write(str(src / 'DIV2K_valid_HR' / '0801.png'), valid)
    dst = tmp_path / 'out'
    assert run_cli('div2k', '--src', src, '--dst', dst, '--crop', 48, '--step', 24) == 0

    gt_subs = lmdb_images(str(dst / 'DIV2K_train_HR_sub.lmdb'))
    # 0001: rows [0, 24], cols [0, 24, 48] -> 6; 0002 mod-cropped to 84x60: rows [0, 24, 36], cols [0, 12] -> 6
    assert list(gt_subs) == [f'0001_s{i:03d}' for i in range(1, 7)] + [f'0002_s{i:03d}' for i in range(1, 7)]
    hr2 = hrs['0002'][:84, :60]
    np.testing.assert_array_equal(gt_subs['0002_s005'], hr2[36:84, 0:48])
    np.testing.assert_array_equal(gt_subs['0001_s006'], hrs['0001'][24:72, 48:96])
    for scale in (2, 3, 4):
        lr_full = imread(str(dst / 'DIV2K_train_LR_bicubic' / f'X{scale}' / f'0002x{scale}.png'))
        np.testing.assert_array_equal(lr_full, bicubic_downscale(hr2, scale))
        lq = f'DIV2K_train_LR_bicubic_X{scale}_sub.lmdb'
        pairs = basicsr_pairs(dst / lq, dst / 'DIV2K_train_HR_sub.lmdb', 'lmdb', scale=scale)
        assert set(pairs) == set(gt_subs)
        c, y = 48 // scale, 36 // scale
        np.testing.assert_array_equal(pairs['0002_s005'][0], lr_full[y:y + c, 0:c])
        np.testing.assert_array_equal(pairs['0002_s005'][1], gt_subs['0002_s005'])
    with open(dst / 'DIV2K_train_LR_bicubic_X3_sub.lmdb' / 'meta_info.txt') as f:
        assert f.readline() == '0001_s001.png (16,16,3) 1\n'
    assert (dst / 'DIV2K_train_HR_sub.lmdb' / 'lock.mdb').is_file()

    # validation: the option-file folder layout with filename_tmpl '{}x4'
    pairs = basicsr_pairs(dst / 'DIV2K_valid_LR_bicubic' / 'X4', dst / 'DIV2K_valid_HR', 'disk', 4, '{}x4')
    np.testing.assert_array_equal(pairs['0801'][1], valid[:48, :60])
    np.testing.assert_array_equal(pairs['0801'][0], bicubic_downscale(valid[:48, :60], 4))
    assert run_cli('verify', dst) == 0

    # a rerun touches nothing
    mtime = os.stat(dst / 'DIV2K_train_HR_sub.lmdb' / 'data.mdb').st_mtime_ns
    capsys.readouterr()
    assert run_cli('div2k', '--src', src, '--dst', dst, '--crop', 48, '--step', 24) == 0
    assert 'already complete, skipped' in capsys.readouterr().out
    assert os.stat(dst / 'DIV2K_train_HR_sub.lmdb' / 'data.mdb').st_mtime_ns == mtime

    assert run_cli('div2k', '--src', src, '--dst', dst, '--crop', 50, '--step', 24) == 2
    assert 'divisible by every scale' in capsys.readouterr().err


def test_div2k_wrong_layout_names_the_expected_folders(tmp_path, capsys):
    write(str(tmp_path / 'src' / 'HR' / '0001.png'), np.zeros((8, 8, 3), np.uint8))
    assert run_cli('div2k', '--src', tmp_path / 'src', '--dst', tmp_path / 'o') == 2
    err = capsys.readouterr().err
    assert "expected 'DIV2K_train_HR/'" in err and 'holds: HR/' in err


# --------------------------------------------------------------------------------------- GoPro
GOPRO_TRAIN = {'GOPR0372_07_00': ['000047', '000048'], 'GOPR0374_11_00': ['000001']}
GOPRO_TEST = {'GOPR0384_11_00': ['000001', '000002']}


def make_gopro(root, rng, layout, h=40, w=72):
    """Fake GOPRO_Large in the official or the flattened layout; returns {key: (blur, blur_gamma, sharp)}."""
    truth = {}
    for split, seqs in (('train', GOPRO_TRAIN), ('test', GOPRO_TEST)):
        for seq, frames in seqs.items():
            for frame in frames:
                imgs = tuple(rand_img(rng, h, w) for _ in range(3))
                truth[(split, f'{seq}-{frame}')] = imgs
                if layout == 'official':
                    for folder, img in zip(('blur', 'blur_gamma', 'sharp'), imgs):
                        write(str(root / 'GOPRO_Large' / split / seq / folder / f'{frame}.png'), img)
                else:
                    write(str(root / split / 'input' / f'{seq}-{frame}.png'), imgs[0])
                    write(str(root / split / 'target' / f'{seq}-{frame}.png'), imgs[2])
    return truth


def test_gopro_official_and_flattened_layouts_give_the_same_data(tmp_path):
    truth = make_gopro(tmp_path / 'official', np.random.default_rng(2), 'official')
    # the flattened repack of the same frames
    for (split, key), (blur, _, sharp) in truth.items():
        write(str(tmp_path / 'flat' / split / 'input' / f'{key}.png'), blur)
        write(str(tmp_path / 'flat' / split / 'target' / f'{key}.png'), sharp)
    for layout in ('official', 'flat'):
        assert run_cli('gopro', '--src', tmp_path / layout, '--dst', tmp_path / f'out_{layout}',
                       '--crop', 32, '--step', 16) == 0
    out = tmp_path / 'out_official'
    for rel in ('train/blur_crops.lmdb', 'train/sharp_crops.lmdb', 'test/input.lmdb', 'test/target.lmdb'):
        a, b = lmdb_images(str(out / rel)), lmdb_images(str(tmp_path / 'out_flat' / rel))
        assert list(a) == list(b)
        assert all(np.array_equal(a[k], b[k]) for k in a)

    # training crops through BasicSR: 40x72 -> rows [0, 8], cols [0, 16, 32, 40] -> 8 crops
    pairs = basicsr_pairs(out / 'train' / 'blur_crops.lmdb', out / 'train' / 'sharp_crops.lmdb', 'lmdb')
    assert len(pairs) == 3 * 8
    blur, blur_gamma, sharp = truth[('train', 'GOPR0372_07_00-000048')]
    lq, gt = pairs['GOPR0372_07_00-000048_s007']  # second row (y=8), third column (x=32)
    np.testing.assert_array_equal(lq, blur[8:40, 32:64])  # 'blur', not 'blur_gamma', is the default input
    np.testing.assert_array_equal(gt, sharp[8:40, 32:64])
    # test pairs, both backends
    for backend, lq_dir, gt_dir in (('lmdb', 'test/input.lmdb', 'test/target.lmdb'),
                                    ('disk', 'test/input', 'test/target')):
        pairs = basicsr_pairs(out / lq_dir, out / gt_dir, backend)
        assert sorted(pairs) == ['GOPR0384_11_00-000001', 'GOPR0384_11_00-000002']
        blur, _, sharp = truth[('test', 'GOPR0384_11_00-000002')]
        np.testing.assert_array_equal(pairs['GOPR0384_11_00-000002'][0], blur)
        np.testing.assert_array_equal(pairs['GOPR0384_11_00-000002'][1], sharp)
    assert run_cli('verify', out) == 0

    # --blur blur_gamma picks the other folder
    assert run_cli('gopro', '--src', tmp_path / 'official', '--dst', tmp_path / 'gamma', '--splits', 'test',
                   '--blur', 'blur_gamma') == 0
    got = lmdb_images(str(tmp_path / 'gamma' / 'test' / 'input.lmdb'))['GOPR0384_11_00-000001']
    np.testing.assert_array_equal(got, truth[('test', 'GOPR0384_11_00-000001')][1])


def test_gopro_workers_give_identical_lmdbs(tmp_path):
    make_gopro(tmp_path / 'src', np.random.default_rng(3), 'flat')
    for workers in (1, 2):
        assert run_cli('gopro', '--src', tmp_path / 'src', '--dst', tmp_path / f'w{workers}', '--crop', 32,
                       '--step', 16, '--workers', workers, '--splits', 'train') == 0
    for rel in ('train/blur_crops.lmdb', 'train/sharp_crops.lmdb'):
        metas = [(tmp_path / w / rel / 'meta_info.txt').read_text() for w in ('w1', 'w2')]
        assert metas[0] == metas[1]
        a, b = lmdb_images(str(tmp_path / 'w1' / rel)), lmdb_images(str(tmp_path / 'w2' / rel))
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_gopro_wrong_layout_and_bad_images_are_named(tmp_path, capsys):
    (tmp_path / 'src' / 'train' / 'blurry').mkdir(parents=True)
    assert run_cli('gopro', '--src', tmp_path / 'src', '--dst', tmp_path / 'o') == 2
    err = capsys.readouterr().err
    assert "GOPRxxxx_xx_xx/{blur,blur_gamma,sharp}" in err and "'train/input/'" in err and 'blurry/' in err

    make_gopro(tmp_path / 'bad', np.random.default_rng(4), 'flat')
    victim = tmp_path / 'bad' / 'test' / 'target' / 'GOPR0384_11_00-000002.png'
    data = victim.read_bytes()
    victim.write_bytes(data[:len(data) // 2])  # truncated download
    (tmp_path / 'bad' / 'test' / 'input' / 'GOPR0384_11_00-000001.png').write_bytes(b'not an image at all')
    assert run_cli('gopro', '--src', tmp_path / 'bad', '--dst', tmp_path / 'o2', '--splits', 'test') == 2
    err = capsys.readouterr().err
    assert 'GOPR0384_11_00-000002.png: the image is truncated' in err
    assert 'GOPR0384_11_00-000001.png: the image is truncated' in err or 'not a decodable image' in err
    assert '2 source file(s) could not be used' in err
    # no LMDB that looks complete, and no leftovers
    assert not (tmp_path / 'o2' / 'test' / 'input.lmdb').exists()
    assert not (tmp_path / 'o2' / 'test' / 'input.lmdb.partial').exists()


# ---------------------------------------------------------------------------------------- HIDE
def test_hide_dotted_names_are_renamed_for_basicsr(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / 'src' / 'HIDE_dataset'
    truth = {}
    # (blurry file, GT file): the usual spelling, a name without '.MP4', and a GT spelled differently
    cases = [('test-close-ups', '1fromGOPR1096.MP4.png', '1fromGOPR1096.MP4.png'),
             ('test-long-shot', '22fromGOPR1040.MP4.png', '22fromGOPR1040.MP4.png'),
             ('test-long-shot', '1fromGOPR0950.png', '1fromGOPR0950.png'),
             ('test-close-ups', '109fromGOPR1096.MP4.png', '109fromGOPR1096.png')]
    for sub, blurry, sharp in cases:
        b, s = rand_img(rng, 24, 40), rand_img(rng, 24, 40)
        write(str(root / 'test' / sub / blurry), b)
        write(str(root / 'GT' / sharp), s)
        truth[blurry] = (b, s)
    write(str(root / 'train' / '5fromGOPR0001.MP4.png'), rand_img(rng, 24, 40))  # train split: not used
    dst = tmp_path / 'HIDE'
    assert run_cli('hide', '--src', tmp_path / 'src', '--dst', dst) == 0
    want = {'1fromGOPR1096_MP4': '1fromGOPR1096.MP4.png', '22fromGOPR1040_MP4': '22fromGOPR1040.MP4.png',
            '1fromGOPR0950': '1fromGOPR0950.png', '109fromGOPR1096_MP4': '109fromGOPR1096.MP4.png'}
    for backend, lq, gt in (('lmdb', 'input.lmdb', 'target.lmdb'), ('disk', 'input', 'target')):
        pairs = basicsr_pairs(dst / 'test' / lq, dst / 'test' / gt, backend)
        assert set(pairs) == set(want)
        for key, src_name in want.items():
            np.testing.assert_array_equal(pairs[key][0], truth[src_name][0])
            np.testing.assert_array_equal(pairs[key][1], truth[src_name][1])
    names = (dst / 'test' / 'names.tsv').read_text()
    assert '109fromGOPR1096_MP4.png\ttest/test-close-ups/109fromGOPR1096.MP4.png\tGT/109fromGOPR1096.png' in names
    assert run_cli('verify', dst) == 0


def test_hide_missing_gt_lists_both_spellings(tmp_path, capsys):
    root = tmp_path / 'HIDE_dataset'
    write(str(root / 'test' / 'test-long-shot' / '3fromGOPR1000.MP4.png'), np.zeros((8, 8, 3), np.uint8))
    (root / 'GT').mkdir()
    assert run_cli('hide', '--src', tmp_path, '--dst', tmp_path / 'o') == 2
    assert 'looked for GT/3fromGOPR1000.MP4.png and GT/3fromGOPR1000.png' in capsys.readouterr().err


def test_lmdb_writer_refuses_keys_basicsr_would_cut(tmp_path):
    writer = LmdbWriter(str(tmp_path / 'x.lmdb'))
    with pytest.raises(PrepError, match=r"contains '\.'.*split\('\.'\)"):
        writer.put_image('1fromGOPR1096.MP4', np.zeros((4, 4, 3), np.uint8))
    writer.abort()
    assert not (tmp_path / 'x.lmdb.partial').exists()


# ------------------------------------------------------------------------------------ RealBlur
@pytest.mark.parametrize('variant', ['J', 'R'])
def test_realblur_follows_the_list_files(tmp_path, variant, capsys):
    from datasets_prep.realblur import FOLDERS
    rng = np.random.default_rng(6)
    folder = FOLDERS[variant]
    src = tmp_path / 'src'
    truth = {}
    lists = {'train': [('scene001', 1), ('scene001', 2), ('scene003', 5)], 'test': [('scene002', 2), ('scene002', 21)]}
    for split, entries in lists.items():
        lines = []
        for scene, k in entries:
            b, s = rand_img(rng, 30, 26), rand_img(rng, 30, 26)
            write(str(src / folder / scene / 'blur' / f'blur_{k}.png'), b)
            write(str(src / folder / scene / 'gt' / f'gt_{k}.png'), s)
            truth[f'{scene}_blur_{k}'] = (b, s)
            lines.append(f'{folder}/{scene}/gt/gt_{k}.png {folder}/{scene}/blur/blur_{k}.png ')
        # the official format: a trailing space on every line but the last, no final newline
        (src / f'RealBlur_{variant}_{split}_list.txt').write_text('\n'.join(lines).rstrip())
    write(str(src / folder / 'scene009' / 'blur' / 'blur_1.png'), rand_img(rng, 30, 26))  # in no list
    dst = tmp_path / f'RealBlur_{variant}'
    assert run_cli(f'realblur_{variant.lower()}', '--src', src, '--dst', dst) == 0
    train = basicsr_pairs(dst / 'train' / 'input.lmdb', dst / 'train' / 'target.lmdb', 'lmdb')
    assert sorted(train) == ['scene001_blur_1', 'scene001_blur_2', 'scene003_blur_5']
    test = basicsr_pairs(dst / 'test' / 'input', dst / 'test' / 'target', 'disk')
    assert sorted(test) == ['scene002_blur_2', 'scene002_blur_21']
    for key, (lq, gt) in {**train, **test}.items():
        np.testing.assert_array_equal(lq, truth[key][0])
        np.testing.assert_array_equal(gt, truth[key][1])
    assert run_cli('verify', dst) == 0

    (src / f'RealBlur_{variant}_test_list.txt').unlink()
    assert run_cli(f'realblur_{variant.lower()}', '--src', src, '--dst', tmp_path / 'o') == 2
    assert f"'RealBlur_{variant}_test_list.txt' was not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- REDS
def test_reds_training_lmdbs_and_val300(tmp_path):
    rng = np.random.default_rng(7)
    src = tmp_path / 'REDS'
    truth = {}
    for split, clips, frames in (('train', ['000', '001'], 3), ('val', ['000', '029'], 20)):
        for clip in clips:
            for f in range(frames):
                sharp = rand_img(rng, 18, 32)
                jpg = str(src / split / f'{split}_blur_jpeg' / clip / f'{f:08d}.jpg')
                write(jpg, rand_img(rng, 18, 32))
                write(str(src / split / f'{split}_sharp' / clip / f'{f:08d}.png'), sharp)
                truth[(split, f'{clip}_{f:08d}')] = (imread(jpg), sharp)  # the decoded JPEG is the reference
    dst = tmp_path / 'out'
    assert run_cli('reds', '--src', src, '--dst', dst) == 0
    train = basicsr_pairs(dst / 'train' / 'train_blur_jpeg.lmdb', dst / 'train' / 'train_sharp.lmdb', 'lmdb')
    assert len(train) == 6 and '001_00000002' in train
    val = basicsr_pairs(dst / 'val' / 'blur_300', dst / 'val' / 'sharp_300', 'disk')
    # REDS-val-300 keeps the frames whose index ends in 9
    assert sorted(val) == ['000_00000009', '000_00000019', '029_00000009', '029_00000019']
    val_lmdb = basicsr_pairs(dst / 'val' / 'blur_300.lmdb', dst / 'val' / 'sharp_300.lmdb', 'lmdb')
    assert set(val_lmdb) == set(val)
    for split, pairs in (('train', train), ('val', val), ('val', val_lmdb)):
        for key, (lq, gt) in pairs.items():
            np.testing.assert_array_equal(lq, truth[(split, key)][0])
            np.testing.assert_array_equal(gt, truth[(split, key)][1])
    assert run_cli('verify', dst) == 0


# ---------------------------------------------------------------------------------------- SIDD
def test_sidd_training_crops_and_validation_blocks(tmp_path, capsys):
    from scipy.io import savemat
    rng = np.random.default_rng(8)
    data = tmp_path / 'src' / 'SIDD_Medium_Srgb' / 'Data'
    truth = {}
    for inst, scene in (('0001', '0001_001_S6_00100_00060_3200_L'), ('0002', '0002_001_S6_00100_00060_3200_N')):
        for idx in ('010', '011'):
            noisy, gt = rand_img(rng, 40, 50), rand_img(rng, 40, 50)
            write(str(data / scene / f'{inst}_NOISY_SRGB_{idx}.PNG'), noisy)
            write(str(data / scene / f'{inst}_GT_SRGB_{idx}.PNG'), gt)
            truth[f'{inst}_SRGB_{idx}'] = (noisy, gt)
    blocks_noisy = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    blocks_gt = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    savemat(str(tmp_path / 'src' / 'ValidationNoisyBlocksSrgb.mat'), {'ValidationNoisyBlocksSrgb': blocks_noisy})
    savemat(str(tmp_path / 'src' / 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': blocks_gt})
    dst = tmp_path / 'SIDD'
    assert run_cli('sidd', '--src', tmp_path / 'src', '--dst', dst, '--crop', 32, '--step', 24) == 0
    train = basicsr_pairs(dst / 'train' / 'input_crops.lmdb', dst / 'train' / 'gt_crops.lmdb', 'lmdb')
    # 40x50 with 32/24: rows [0, 8], cols [0, 18] -> 4 crops per image, 4 images
    assert len(train) == 16
    lq, gt = train['0002_SRGB_011_s004']
    np.testing.assert_array_equal(lq, truth['0002_SRGB_011'][0][8:40, 18:50])
    np.testing.assert_array_equal(gt, truth['0002_SRGB_011'][1][8:40, 18:50])
    val = basicsr_pairs(dst / 'val' / 'input_crops.lmdb', dst / 'val' / 'gt_crops.lmdb', 'lmdb')
    assert len(val) == 6
    # key n*B + b; the .mat holds RGB, BasicSR stores BGR
    np.testing.assert_array_equal(val['ValidationBlocksSrgb_4'][0], blocks_noisy[1, 1][:, :, ::-1])
    np.testing.assert_array_equal(val['ValidationBlocksSrgb_4'][1], blocks_gt[1, 1][:, :, ::-1])
    assert run_cli('verify', dst) == 0

    (tmp_path / 'src' / 'ValidationGtBlocksSrgb.mat').unlink()
    assert run_cli('sidd', '--src', tmp_path / 'src', '--dst', tmp_path / 'o', '--splits', 'val') == 2
    assert "'ValidationGtBlocksSrgb.mat' not found" in capsys.readouterr().err


# --------------------------------------------------------------------- LMDB writer and verify
def test_lmdb_map_grows_instead_of_map_full(tmp_path):
    rng = np.random.default_rng(9)
    writer = LmdbWriter(str(tmp_path / 'big.lmdb'), map_size=64 * 1024, batch_bytes=256 * 1024)
    imgs = {f'k{i:03d}': rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(150)}  # ~1.8 MB of noise
    for key, img in imgs.items():
        writer.put_image(key, img)
    assert writer.commit() == 150
    assert writer.map_size > 64 * 1024
    got = lmdb_images(str(tmp_path / 'big.lmdb'))
    assert all(np.array_equal(got[k], imgs[k]) for k in imgs)


def _pair_lmdbs(tmp_path, n=4):
    rng = np.random.default_rng(10)
    paths = [str(tmp_path / 'lq.lmdb'), str(tmp_path / 'gt.lmdb')]
    for path, size in zip(paths, (8, 16)):
        writer = LmdbWriter(path)
        for i in range(n):
            writer.put_image(f'img{i}', rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8))
        writer.commit()
    return paths


def test_verify_catches_removed_key_wrong_shape_and_pair_count(tmp_path, capsys):
    lq, gt = _pair_lmdbs(tmp_path)
    assert run_cli('verify', lq, gt, '--count', 4) == 0
    capsys.readouterr()

    env = lmdb.open(gt)
    with env.begin(write=True) as txn:
        saved = txn.get(b'img2')
        txn.delete(b'img2')
    env.close()
    assert run_cli('verify', lq, gt) == 1
    assert "key 'img2' is in meta_info.txt but not in data.mdb" in capsys.readouterr().out
    env = lmdb.open(gt)
    with env.begin(write=True) as txn:
        txn.put(b'img2', saved)
    env.close()

    meta = osp.join(lq, 'meta_info.txt')
    text = open(meta).read()
    with open(meta, 'w') as f:
        f.write(text.replace('img1.png (8,10,3)', 'img1.png (9,10,3)'))
    assert run_cli('verify', lq, gt) == 1
    assert "key 'img1' decodes to shape (8, 10, 3) but meta_info.txt says (9, 10, 3)" in capsys.readouterr().out
    with open(meta, 'w') as f:
        f.write(''.join(line for line in text.splitlines(True) if not line.startswith('img3')))
    problems = verify_lmdb_group([lq, gt])
    assert any('data.mdb holds 4 keys, meta_info.txt lists 3' in p for p in problems)
    assert run_cli('verify', lq, gt) == 1


def test_interrupted_run_never_looks_complete(tmp_path):
    """SIGKILL mid-run: only a .partial folder remains; verify and BasicSR refuse it; a rerun finishes."""
    rng = np.random.default_rng(11)
    src = tmp_path / 'REDS'
    img = rand_img(rng, 24, 24)
    for f in range(600):
        write(str(src / 'train' / 'train_sharp' / '000' / f'{f:08d}.png'), img)
        write(str(src / 'train' / 'train_blur_jpeg' / '000' / f'{f:08d}.jpg'), img)
    dst = tmp_path / 'out'
    partial = dst / 'train' / 'train_sharp.lmdb.partial'
    final = dst / 'train' / 'train_sharp.lmdb'
    cmd = [sys.executable, '-m', 'datasets_prep', 'reds', '--src', str(src), '--dst', str(dst), '--splits', 'train']
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not partial.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, 'the run ended before it could be interrupted; make the fake larger'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial.exists() and not final.exists()
    assert main(['verify', str(final)]) == 1
    from basicsr.data.paired_image_dataset import PairedImageDataset
    with pytest.raises(Exception):
        PairedImageDataset({'dataroot_lq': str(dst / 'train' / 'train_blur_jpeg.lmdb'), 'dataroot_gt': str(final),
                            'io_backend': {'type': 'lmdb'}, 'scale': 1, 'phase': 'val'})
    assert run_cli('reds', '--src', src, '--dst', dst, '--splits', 'train') == 0
    assert final.exists() and not partial.exists()
    assert run_cli('verify', dst, '--count', 600) == 0


# ------------------------------------------------------------------------------------- samples
def _sample(tmp_path, task, like=None, **kw):
    from datasets_prep.sample import make_sample
    dst = tmp_path / (like or task)
    make_sample(task, str(dst), like, train_photos=('astronaut', 'coffee'), test_photos=('chelsea',), **kw)
    return dst


def test_sample_sr_has_the_div2k_layout_and_trains_through_basicsr(tmp_path):
    from basicsr.data.paired_image_dataset import PairedImageDataset
    dst = _sample(tmp_path, 'sr')
    # what a DIV2K x4 training option file points at, with a 256 GT patch and augmentation
    ds = PairedImageDataset({'dataroot_gt': str(dst / 'DIV2K_train_HR_sub.lmdb'),
                             'dataroot_lq': str(dst / 'DIV2K_train_LR_bicubic_X4_sub.lmdb'),
                             'io_backend': {'type': 'lmdb'}, 'scale': 4, 'phase': 'train', 'gt_size': 256,
                             'use_hflip': True, 'use_rot': True})
    assert len(ds) > 0
    item = ds[0]
    assert tuple(item['gt'].shape) == (3, 256, 256) and tuple(item['lq'].shape) == (3, 64, 64)
    del ds  # py-lmdb refuses to open an environment twice in one process (verify opens it below)
    # the real SR degradation: the LR sub-images are MATLAB bicubic of the (mod-12) HR photos
    hr = mod_crop(imread(str(dst / 'DIV2K_valid_HR' / '0801.png')), 4)
    np.testing.assert_array_equal(imread(str(dst / 'DIV2K_valid_LR_bicubic' / 'X4' / '0801x4.png')),
                                  bicubic_downscale(hr, 4))
    assert main(['verify', str(dst)]) == 0


def test_sample_denoise_and_deblur_layouts_and_degradations(tmp_path):
    dst = _sample(tmp_path, 'denoise', sigma=25.0)
    train = basicsr_pairs(dst / 'train' / 'input_crops.lmdb', dst / 'train' / 'gt_crops.lmdb', 'lmdb')
    # away from 0 and 255 (where clipping biases it) the noise is N(0, 25) rounded
    noise = np.concatenate([(lq.astype(float) - gt)[(gt > 75) & (gt < 180)] for lq, gt in train.values()])
    assert abs(noise.mean()) < 0.3 and 24.5 < noise.std() < 25.5
    val = basicsr_pairs(dst / 'val' / 'input_crops.lmdb', dst / 'val' / 'gt_crops.lmdb', 'lmdb')
    assert 'ValidationBlocksSrgb_0' in val and val['ValidationBlocksSrgb_0'][1].shape == (256, 256, 3)

    dst = _sample(tmp_path, 'deblur')
    test = basicsr_pairs(dst / 'test' / 'input', dst / 'test' / 'target', 'disk')
    assert sorted(test) == ['GOPR9500_11_00-000001', 'GOPR9500_11_00-000002']
    for lq, gt in test.values():
        sharpness = [cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() for x in (lq, gt)]
        assert sharpness[0] < 0.6 * sharpness[1]  # motion blur removed much of the detail
    crops = basicsr_pairs(dst / 'train' / 'blur_crops.lmdb', dst / 'train' / 'sharp_crops.lmdb', 'lmdb')
    assert all(k.startswith('GOPR9') and '_s0' in k for k in crops)
    assert main(['verify', str(dst)]) == 0

    dst = _sample(tmp_path, 'deblur', like='hide')
    assert sorted(os.listdir(dst / 'test' / 'input')) == ['1fromGOPR1000_MP4.png', '2fromGOPR1000_MP4.png']


# ------------------------------------------------------------------------ CLI and option hints
def _subparsers():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == 'cmd').choices


def test_every_subcommand_argument_reaches_its_function():
    """The dispatch passes parsed values by name: each must be a parameter of the target, none forgotten."""
    import inspect

    from datasets_prep.__main__ import resolve
    subparsers = _subparsers()
    for name, command in COMMANDS.items():
        params = inspect.signature(resolve(command)).parameters
        dests = {a.dest for a in subparsers[name]._actions if a.dest != 'help'}
        assert dests <= set(params), (name, sorted(dests - set(params)))
        assert set(command.fixed) <= set(params) and not set(command.fixed) & dests, name
        needed = {p for p, v in params.items() if v.default is inspect.Parameter.empty}
        assert needed <= dests | set(command.fixed), (name, sorted(needed - dests - set(command.fixed)))


def test_usage_lines_parse_to_the_table_defaults():
    from datasets_prep.sample import TASK_OF
    parser = build_parser()
    for name, command in COMMANDS.items():
        if not command.src:
            continue
        argv = command.usage().split()[3:]
        argv[argv.index('--src') + 1:] = ['x'] + argv[argv.index('--dst'):]  # the placeholder is several words
        args = parser.parse_args(argv)
        assert args.cmd == name and args.dst == command.dst == parser.parse_args([name, '--src', 'x']).dst
        if command.sample:
            args = parser.parse_args(command.sample_usage().split()[3:])
            assert TASK_OF[args.like] == args.task and args.dst == command.dst
    from datasets_prep.sr import SR_SETS
    assert [c.fixed['name'] for c in COMMANDS.values() if c.also == 'srbench'] == list(SR_SETS)


def test_hint_for_a_dataset_path_names_the_command_that_writes_it():
    from ecma_basicsr.engine.options_check import prep_hint
    assert command_for_path('datasets/SR_benchmark/Set5/LR_bicubic/X4').name == 'set5'
    assert command_for_path('datasets/SR_benchmark').name == 'srbench'
    assert command_for_path('/data/me/datasets/RealBlur_R/test/input.lmdb').name == 'realblur_r'
    assert command_for_path('datasets/GoPro_old/test') is None and command_for_path('datasets/CBSD68') is None
    hint = prep_hint('datasets/SR_benchmark/Manga109/HR')
    assert hint.startswith(' Build it with: python -m datasets_prep manga109 --src <')
    assert '--dst datasets/SR_benchmark/Manga109 (all sets at once: python -m datasets_prep srbench' in hint
    assert 'offline sample: python -m datasets_prep sample --task sr --like manga109' in hint
    assert 'README.md' in prep_hint('datasets/CBSD68')


def test_readme_datasets_section_shows_the_table_commands():
    text = open(osp.join(REPO, 'README.md')).read()
    section = text[text.index('<!-- section: datasets -->'):text.index('<!-- section: options -->')]
    for command in COMMANDS.values():
        if command.src and not command.also:
            assert f'`{command.usage()}`' in section, command.name
    assert '`python -m datasets_prep set5 --src' in section


def test_default_crop_sizes_are_the_standard_ones():
    parser = build_parser()
    for argv, crop, step in ((['div2k', '--src', 'x'], 480, 240), (['gopro', '--src', 'x'], 512, 256),
                             (['sidd', '--src', 'x'], 512, 384)):
        args = parser.parse_args(argv)
        assert (args.crop, args.step) == (crop, step)
