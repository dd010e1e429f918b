"""Benchmark (not a test): random reads of 256x256 crops from an LMDB versus the same crops as PNG files.

Both sides are read the way BasicSR's training loader does it: ``FileClient('lmdb')`` /
``FileClient('disk')`` fetch the bytes, ``imfrombytes(float32=True)`` decodes them. We time the
fetch alone and fetch + decode, and print crops/s for both backends and LMDB/PNG ratios.

Data: by default a pool of 512 distinct 256x256 crops at seeded random positions of the
scikit-image photographs (full resolution), written once with ``datasets_prep``'s LMDB writer
(PNG level 1, BasicSR's LMDB default) and as PNG files (level 3, what BasicSR's
``extract_subimages.py`` writes). ``--lmdb X.lmdb`` benchmarks an existing LMDB instead (its values
are also exported as PNG files for the disk side). Each trial reads 256 crops in a seeded random
order (the same order for both backends); the median of ``--trials`` is reported. The files
were just written, so this is the warm page-cache case (what a training run sees once the data
fits in RAM); cold-cache numbers need a dataset larger than RAM or dropped caches.

    python benchmarks/lmdb_vs_png.py [--work DIR] [--pool 512] [--reads 256] [--trials 7]
"""
import argparse
import os
import os.path as osp
import shutil
import statistics
import sys
import tempfile
import time

import cv2
import lmdb
import numpy as np
from basicsr.utils import FileClient, imfrombytes  # imports through the project's start-up hook (pip install -e .)

import ecma_basicsr  # noqa: F401  (registries)
from datasets_prep.common import write_png_atomic  # noqa: E402
from datasets_prep.lmdb_writer import LmdbWriter, read_meta  # noqa: E402

PHOTOS = ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'motorcycle_left',
          'motorcycle_right', 'chelsea', 'coffee')


def build_pool(work, pool, size, png_level, seed):
    """Write ``pool`` random crops into ``work/crops.lmdb`` and ``work/png/``; returns the keys."""
    from datasets_prep.sample import load_photo
    rng = np.random.default_rng(seed)
    photos = [load_photo(n, max_side=10 ** 6) for n in PHOTOS]
    writer = LmdbWriter(osp.join(work, 'crops.lmdb'))
    keys = []
    for i in range(pool):
        img = photos[i % len(photos)]
        y = int(rng.integers(0, img.shape[0] - size + 1))
        x = int(rng.integers(0, img.shape[1] - size + 1))
        crop = img[y:y + size, x:x + size]
        key = f'crop{i:05d}'
        writer.put_image(key, crop)
        write_png_atomic(osp.join(work, 'png', key + '.png'), crop, png_level)
        keys.append(key)
    writer.commit()
    return osp.join(work, 'crops.lmdb'), keys


def export_pool(work, lmdb_path, pool, png_level, seed):
    """Use an existing LMDB: pick ``pool`` keys and export their images as PNG files."""
    entries, problems = read_meta(lmdb_path)
    if problems:
        sys.exit(f'{lmdb_path}: {problems[0]}')
    rng = np.random.default_rng(seed)
    keys = [entries[i][0] for i in sorted(rng.choice(len(entries), min(pool, len(entries)), replace=False))]
    env = lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False)
    with env.begin() as txn:
        for key in keys:
            img = cv2.imdecode(np.frombuffer(txn.get(key.encode()), np.uint8), cv2.IMREAD_UNCHANGED)
            write_png_atomic(osp.join(work, 'png', key + '.png'), img, png_level)
    env.close()
    return lmdb_path, keys


def time_reads(read, order, decode):
    start = time.perf_counter()
    nbytes = 0
    for key in order:
        data = read(key)
        nbytes += len(data)
        if decode:
            imfrombytes(data, float32=True)
    return len(order) / (time.perf_counter() - start), nbytes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work', default=None, help='folder for the LMDB and PNG files (default: a temp dir)')
    parser.add_argument('--lmdb', default=None, help='benchmark this existing LMDB instead of building a pool')
    parser.add_argument('--pool', type=int, default=512, help='distinct crops to choose from (default 512)')
    parser.add_argument('--size', type=int, default=256, help='crop size (default 256)')
    parser.add_argument('--reads', type=int, default=256, help='random reads per trial (default 256)')
    parser.add_argument('--trials', type=int, default=7)
    parser.add_argument('--png-level', type=int, default=3, help='PNG compression of the files (default 3)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    work = args.work or tempfile.mkdtemp(prefix='lmdb_vs_png_')
    os.makedirs(work, exist_ok=True)
    try:
        t0 = time.perf_counter()
        if args.lmdb:
            lmdb_path, keys = export_pool(work, args.lmdb, args.pool, args.png_level, args.seed)
        else:
            lmdb_path, keys = build_pool(work, args.pool, args.size, args.png_level, args.seed)
        png_dir = osp.join(work, 'png')
        lmdb_bytes = os.path.getsize(osp.join(lmdb_path, 'data.mdb'))
        png_bytes = sum(os.path.getsize(osp.join(png_dir, k + '.png')) for k in keys)
        print(f'pool: {len(keys)} crops, built in {time.perf_counter() - t0:.1f} s; '
          f'LMDB data.mdb {lmdb_bytes / 2**20:.1f} MiB'
              f'{" (whole LMDB)" if args.lmdb else ""}, PNG files {png_bytes / 2**20:.1f} MiB')

        lmdb_client = FileClient('lmdb', db_paths=[lmdb_path], client_keys=['gt'], readonly=True, lock=False,
                                 readahead=False)
        disk_client = FileClient('disk')
        readers = {'lmdb': lambda k: lmdb_client.get(k, 'gt'),
                   'png': lambda k: disk_client.get(osp.join(png_dir, k + '.png'))}
        rng = np.random.default_rng(args.seed + 1)
        results = {}
        for decode in (False, True):
            per = {name: [] for name in readers}
            for _ in range(args.trials):
                order = [keys[i] for i in rng.integers(0, len(keys), args.reads)]
                for name, read in readers.items():
                    rate, _ = time_reads(read, order, decode)
                    per[name].append(rate)
            results[decode] = {name: statistics.median(v) for name, v in per.items()}
        threads = cv2.getNumThreads()
        print(f'{args.trials} trials x {args.reads} random reads of {args.size}x{args.size} crops, median; '
              f'warm page cache; cv2 threads {threads}')
        for decode, label in ((False, 'fetch bytes only        '), (True, 'fetch + decode (BasicSR)')):
            r = results[decode]
            print(f"{label}: LMDB {r['lmdb']:9.1f} crops/s   PNG files {r['png']:9.1f} crops/s   "
                  f"ratio LMDB/PNG {r['lmdb'] / r['png']:.2f}x")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
