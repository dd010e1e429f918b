"""Failures a new user meets: each ends in one line naming the file, and nothing the user made is lost.

Every test runs the real command (``basicsr ...`` or ``python -m datasets_prep ...``) in a fresh
process on a tiny sample set and checks the exit status, the one-line message and that the user's
data and models are untouched.
"""
import hashlib
import os
import os.path as osp
import subprocess
import sys

import cv2
import pytest
from helpers import make_sr_folders, run_cli, tiny_sr_options, write_yaml

SIGBUS_EXIT = (135, -7)


def run_prep(args, cwd, timeout=300):
    """``python -m datasets_prep <args>`` in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-m', 'datasets_prep', *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def digest(folder):
    """Hash of every file under ``folder`` (name and bytes), to prove it was not touched."""
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = osp.join(dirpath, name)
            h.update(osp.relpath(path, folder).encode())
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def error_lines(proc):
    return [line for line in proc.stderr.splitlines() if 'error:' in line]


def make_lmdb_pair(root, n=6, size=48):
    """``root/datasets/DIV2K/{gt,lq}.lmdb`` written by the prep writer from tiny image folders. Returns the paths."""
    from datasets_prep.lmdb_writer import LmdbWriter
    gt_dir, lq_dir = make_sr_folders(osp.join(root, 'images'), n=n, size=size)
    paths = []
    dst = osp.join(root, 'datasets', 'DIV2K')
    os.makedirs(dst, exist_ok=True)
    for name, folder in (('DIV2K_train_HR_sub', gt_dir), ('DIV2K_train_LR_bicubic_X2_sub', lq_dir)):
        writer = LmdbWriter(osp.join(dst, f'{name}.lmdb'))
        for img_name in sorted(os.listdir(folder)):
            writer.put_image(osp.splitext(img_name)[0], cv2.imread(osp.join(folder, img_name)))
        writer.commit()
        paths.append(osp.join(dst, f'{name}.lmdb'))
    return paths, (gt_dir, lq_dir)


def truncate(path, size):
    with open(path, 'r+b') as f:
        f.truncate(size)


def lmdb_options(name, gt_lmdb, lq_lmdb, gt_dir, lq_dir):
    opt = tiny_sr_options(name, gt_dir, lq_dir)
    train = opt['datasets']['train']
    train.update(dataroot_gt=gt_lmdb, dataroot_lq=lq_lmdb, io_backend={'type': 'lmdb'})
    return opt


# 1. a truncated LMDB -----------------------------------------------------------------------------

@pytest.fixture
def truncated_lmdb(tmp_path):
    (gt_lmdb, lq_lmdb), dirs = make_lmdb_pair(str(tmp_path))
    data = osp.join(gt_lmdb, 'data.mdb')
    full = osp.getsize(data)
    truncate(data, full // 2)
    return tmp_path, gt_lmdb, lq_lmdb, dirs, full


@pytest.mark.parametrize('flags', [[], ['--no-decode']])
def test_verify_reports_a_truncated_lmdb_instead_of_sigbus(truncated_lmdb, flags):
    root, gt_lmdb, _, _, full = truncated_lmdb
    before = digest(gt_lmdb)
    proc = run_prep(['verify', str(root / 'datasets' / 'DIV2K'), *flags], cwd=root)
    assert proc.returncode == 1 and proc.returncode not in SIGBUS_EXIT, proc.stderr[-2000:]
    problems = [line for line in proc.stdout.splitlines() if line.startswith('PROBLEM')]
    assert problems == [f"PROBLEM: '{gt_lmdb}' is truncated ({full // 2} of {full} bytes): delete '{gt_lmdb}' and "
                        'rebuild with: python -m datasets_prep div2k --src <folder with DIV2K_train_HR/, '
                        'DIV2K_valid_HR/> --dst datasets/DIV2K (offline sample: python -m datasets_prep sample '
                        '--task sr --like div2k --dst datasets/DIV2K).'], proc.stdout
    assert digest(gt_lmdb) == before


@pytest.mark.parametrize('size', [8192, 100, 0])
def test_verify_reports_small_truncations_in_one_line(truncated_lmdb, size):
    root, gt_lmdb, _, _, full = truncated_lmdb
    truncate(osp.join(gt_lmdb, 'data.mdb'), size)
    proc = run_prep(['verify', gt_lmdb], cwd=root)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    problems = [line for line in proc.stdout.splitlines() if line.startswith('PROBLEM')]
    assert len(problems) == 1 and gt_lmdb in problems[0] and 'rebuild' in problems[0], proc.stdout
    assert ('truncated' in problems[0]) and (f'({size} of {full} bytes)' in problems[0] or size < 4096)


def test_train_refuses_a_truncated_lmdb_before_touching_anything(truncated_lmdb):
    root, gt_lmdb, lq_lmdb, (gt_dir, lq_dir), full = truncated_lmdb
    opt_file = write_yaml(root / 'tiny.yml', lmdb_options('trunc', gt_lmdb, lq_lmdb, gt_dir, lq_dir))
    before = digest(gt_lmdb)
    proc = run_cli(['train', '-opt', str(opt_file)], cwd=root)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert error_lines(proc) == [f"basicsr train: error: {opt_file}:"] or len(error_lines(proc)) == 1
    assert f"datasets:train:dataroot_gt: '{gt_lmdb}' is truncated ({full // 2} of {full} bytes)" in proc.stderr
    assert 'Traceback' not in proc.stderr and not (root / 'experiments').exists()
    assert digest(gt_lmdb) == before


def test_lmdb_backend_refuses_a_truncated_file_when_the_engine_is_installed(truncated_lmdb, engine):
    from basicsr.utils import FileClient

    from ecma_basicsr.engine.data_checks import DataReadError
    _, gt_lmdb, lq_lmdb, _, full = truncated_lmdb
    with pytest.raises(DataReadError, match=rf"'{gt_lmdb}' is truncated \({full // 2} of {full} bytes\)"):
        FileClient('lmdb', db_paths=[lq_lmdb, gt_lmdb], client_keys=['lq', 'gt'])


# 3. a failed run does not move the trained model away ---------------------------------------------

@pytest.fixture(scope='module')
def previous_run(tmp_path_factory):
    """A finished 2-iteration run, ``experiments/prev/models/net_g_2.pth``, and its option file."""
    root = tmp_path_factory.mktemp('prev')
    gt, lq = make_sr_folders(str(root / 'data'))
    opt = tiny_sr_options('prev', gt, lq, total_iter=2, save_freq=2)
    opt_file = write_yaml(root / 'prev.yml', opt)
    proc = run_cli(['train', '-opt', str(opt_file)], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = root / 'experiments' / 'prev' / 'models' / 'net_g_2.pth'
    assert model.is_file()
    return root, opt_file, opt, model


def experiments_state(root):
    exp = root / 'experiments'
    return sorted(os.listdir(exp)), digest(exp / 'prev' / 'models')


@pytest.mark.parametrize('override, message', [
    ('train:optim_g:type=Adamm', "train:optim_g:type 'Adamm' is not a torch.optim optimizer. Valid choices: "),
    ('train:optim_g:betas=[0.9]', 'train:optim_g: list index out of range (IndexError).'),
    ('train:optim_g:lr=abc', "train:optim_g:lr = 'abc' (str) must be a number."),
    ('train:total_iter=x', "train:total_iter = 'x' (str) must be an integer."),
    ('train:scheduler:periods=[2,2]', 'train:scheduler: periods and restart_weights should have the same length'),
    ('network_g:foo=1', "network_g: ECMASR got an unexpected keyword argument 'foo'."),
])
def test_a_run_that_cannot_start_touches_no_folder(previous_run, override, message):
    root, opt_file, _, _ = previous_run
    before = experiments_state(root)
    proc = run_cli(['train', '-opt', str(opt_file), '--force_yml', override], cwd=root)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert error_lines(proc) == [line for line in proc.stderr.splitlines()
                                 if line.strip() and not line.startswith('basicsr: warning: ')], proc.stderr
    assert len(error_lines(proc)) == 1 and error_lines(proc)[0].startswith(f'basicsr train: error: {opt_file}: ')
    assert message in proc.stderr
    assert experiments_state(root) == before, 'the previous run must stay where it was'


@pytest.mark.parametrize('override, message', [
    ('train:pixel_opt:foo=1', "train:pixel_opt: got an unexpected keyword argument 'foo' (TypeError)."),
    ('val:metrics:psnr:type=psnr', "val:metrics:psnr:type = 'psnr' is not registered. Valid choices: calculate_"),
    ('datasets:train:batch_size_per_gpu=two', "datasets:train:batch_size_per_gpu = 'two' (str) must be an integer."),
])
def test_the_pre_check_tries_losses_metrics_and_counts(tmp_path, override, message):
    from ecma_basicsr.engine.options_check import OptionError, check_args
    opt_file = write_yaml(tmp_path / 'o.yml', tiny_sr_options('o', str(tmp_path), str(tmp_path)))
    with pytest.raises(OptionError) as err:
        check_args(['-opt', str(opt_file), '--force_yml', override], warn=lambda message: None)
    assert str(err.value).startswith(f'{opt_file}: ') and message in str(err.value)


def test_the_pre_check_accepts_what_basicsr_accepts(tmp_path):
    from ecma_basicsr.engine.options_check import check_args
    opt = tiny_sr_options('o', str(tmp_path), str(tmp_path))
    opt['num_gpu'] = 'auto'
    opt_file = write_yaml(tmp_path / 'o.yml', opt)
    # NIQE takes no reference image: BasicSR passes img2 by keyword, which its **kwargs absorbs
    checked = check_args(['-opt', str(opt_file), '--force_yml', 'val:metrics:psnr:type=calculate_niqe',
                          'train:total_iter=4e2'], warn=pytest.fail)
    assert checked['train']['total_iter'] == 400


def test_archiving_is_shown_and_a_run_failing_later_puts_the_previous_run_back(previous_run):
    root, opt_file, opt, model = previous_run
    before = experiments_state(root)
    bad = dict(opt, path=dict(opt['path'], pretrain_network_g=str(model)), network_g=dict(opt['network_g'], width=16))
    bad_file = write_yaml(root / 'mismatch.yml', bad)
    proc = run_cli(['train', '-opt', str(bad_file)], cwd=root)
    assert proc.returncode != 0
    exp = root / 'experiments'
    assert f"the previous run in '{exp / 'prev'}' was moved to '{exp / 'prev'}_archived_" in proc.stderr
    assert f"the previous run is back in '{exp / 'prev'}' (this run's log: '{exp / 'prev'}_failed_" in proc.stderr
    names, models = experiments_state(root)
    assert models == before[1] and model.is_file()
    assert [n for n in names if n != 'prev'] and all('_failed_' in n for n in names if n != 'prev'), names


# 2. a corrupt image ------------------------------------------------------------------------------

def corrupt_png(path):
    with open(path, 'r+b') as f:
        f.seek(40)
        f.write(b'\0' * 64)  # the IHDR/IDAT bytes: the file keeps its name and size but no longer decodes


def test_train_names_a_corrupt_image_and_its_dataset_option_and_keeps_the_previous_run(previous_run):
    root, _, opt, model = previous_run
    data = root / 'corrupt_train'
    gt, lq = make_sr_folders(str(data))
    bad = osp.join(gt, 'img03.png')
    corrupt_png(bad)
    # 6 images, batch 2: 3 iterations read every training image once
    run_opt = dict(tiny_sr_options('prev', gt, lq, total_iter=3, save_freq=3))
    opt_file = write_yaml(root / 'corrupt.yml', run_opt)
    before = experiments_state(root)
    proc = run_cli(['train', '-opt', str(opt_file)], cwd=root)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert error_lines(proc) == [f"basicsr train: error: '{bad}' (datasets:train:dataroot_gt) is not a decodable image "
                                 f'({osp.getsize(bad)} bytes): replace or delete it (an LMDB: rebuild it with its '
                                 'datasets_prep command).'], proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    names, models = experiments_state(root)
    assert models == before[1] and model.is_file() and 'prev' in names


def test_test_names_a_corrupt_image_and_stops(previous_run):
    root, _, opt, model = previous_run
    gt, lq = make_sr_folders(str(root / 'corrupt_test'))
    bad = osp.join(lq, 'img01.png')
    corrupt_png(bad)
    test_opt = {k: v for k, v in opt.items() if k not in ('train', 'datasets')}
    test_opt.update(name='prev_test', datasets={'test_1': dict(opt['datasets']['val'], dataroot_gt=gt, dataroot_lq=lq)},
                    path=dict(opt['path'], pretrain_network_g=str(model)))
    opt_file = write_yaml(root / 'corrupt_test.yml', test_opt)
    proc = run_cli(['test', '-opt', str(opt_file)], cwd=root)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert error_lines(proc) == [f"basicsr test: error: '{bad}' (datasets:test_1:dataroot_lq) is not a decodable image "
                                 f'({osp.getsize(bad)} bytes): replace or delete it (an LMDB: rebuild it with its '
                                 'datasets_prep command).'], proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr


def test_a_corrupt_lmdb_value_names_the_lmdb_and_key(tmp_path):
    import lmdb
    (gt_lmdb, lq_lmdb), (gt_dir, lq_dir) = make_lmdb_pair(str(tmp_path))
    env = lmdb.open(gt_lmdb, map_size=64 * 1024 ** 2)
    with env.begin(write=True) as txn:
        txn.put(b'img02', b'not a png')
    env.close()
    opt = lmdb_options('lmdb_corrupt', gt_lmdb, lq_lmdb, gt_dir, lq_dir)
    opt['train']['total_iter'] = 3
    opt_file = write_yaml(tmp_path / 'lmdb.yml', opt)
    proc = run_cli(['train', '-opt', str(opt_file)], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert error_lines(proc) == [f"basicsr train: error: '{gt_lmdb}' key 'img02' (datasets:train:dataroot_gt) is not a "
                                 'decodable image (9 bytes): replace or delete it (an LMDB: rebuild it with its '
                                 'datasets_prep command).'], proc.stderr[-3000:]


# 4. 1e-4 is a number --------------------------------------------------------------------------------

def test_exponent_numbers_in_the_option_file_and_force_yml_train(tmp_path):
    gt, lq = make_sr_folders(str(tmp_path / 'data'))
    opt_file = write_yaml(tmp_path / 'lr.yml', tiny_sr_options('lr_run', gt, lq, total_iter=2, save_freq=2))
    text = opt_file.read_text()
    assert '  lr: 0.001\n' in text
    opt_file.write_text(text.replace('  lr: 0.001\n', '  lr: 1e-4\n'))  # as written by hand
    proc = run_cli(['train', '-opt', str(opt_file), '--force_yml', 'train:scheduler:eta_min=2.0e-7',
                    'train:totl_iter=5'], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("basicsr: warning: --force_yml 'train:totl_iter=5' adds 'train:totl_iter', which the option file does "
            "not have (did you mean 'train:total_iter'?)." in proc.stderr.splitlines())
    log = open(next((tmp_path / 'experiments' / 'lr_run').glob('train_*.log'))).read()
    assert 'lr: 0.0001\n' in log and 'eta_min: 2e-07\n' in log
    assert 'iter:       1, lr:(1.000e-04,)]' in log  # the optimizer got the number

    proc = run_cli(['train', '-opt', str(opt_file), '--force_yml', 'train:optim_g:lr=1e-4', 'name=lr_run2'],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'warning' not in proc.stderr


def test_force_yml_values_are_yaml_12():
    from ecma_basicsr.engine.yaml_values import parse_value
    assert [parse_value(v) for v in ('1e-4', '2.0e-4', '1.0e4', '.5e-3', '5', '0.0001', '[6, 7]', 'none', 'True',
                                     'AdamW')] == [1e-4, 2e-4, 1e4, 5e-4, 5, 1e-4, [6, 7], None, True, 'AdamW']
    with pytest.raises(ValueError, match=r"'\[6' is not a valid value"):
        parse_value('[6')


# 5. one line instead of a traceback ------------------------------------------------------------------

def make_test_options(opt, model, name='prev_test'):
    """A ``basicsr test`` option dict for the previous run's network and validation set."""
    test_opt = {k: v for k, v in opt.items() if k not in ('train', 'datasets')}
    test_opt.update(name=name, datasets={'test_1': opt['datasets']['val']},
                    path=dict(opt['path'], pretrain_network_g=str(model)))
    return test_opt


def only_error_line(proc):
    lines = error_lines(proc)
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


def test_yaml_syntax_error_names_file_line_and_column(previous_run):
    root, opt_file, _, _ = previous_run
    bad = root / 'syntax.yml'
    bad.write_text(opt_file.read_text().replace('  lr: 0.001\n', '  lr: [0.001\n'))
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if 'lr: [0.001' in text)
    proc = run_cli(['train', '-opt', str(bad)], cwd=root)
    assert proc.returncode == 1
    assert only_error_line(proc).startswith(f'basicsr train: error: {bad}:{line + 1}:')
    assert 'not valid YAML' in proc.stderr


def test_test_with_missing_weights_lists_the_checkpoints_beside_them(previous_run):
    root, _, opt, model = previous_run
    opt_file = write_yaml(root / 'missing_weights.yml', make_test_options(opt, model.parent / 'net_g_9.pth',
                                                                          name='missing_weights'))
    proc = run_cli(['test', '-opt', str(opt_file)], cwd=root)
    assert proc.returncode == 1
    assert only_error_line(proc) == (f"basicsr test: error: {opt_file}: path:pretrain_network_g = "
                                     f"'{model.parent / 'net_g_9.pth'}' does not exist. {model.parent} holds: "
                                     'net_g_2.pth, net_g_latest.pth.')
    assert not (root / 'results' / 'missing_weights').exists()


def test_test_with_a_checkpoint_of_another_configuration_says_so(previous_run):
    root, _, opt, model = previous_run
    test_opt = make_test_options(opt, model, name='mismatch_test')
    test_opt['network_g'] = dict(test_opt['network_g'], width=16)
    opt_file = write_yaml(root / 'mismatch_test.yml', test_opt)
    proc = run_cli(['test', '-opt', str(opt_file)], cwd=root)
    assert proc.returncode == 1
    line = only_error_line(proc)
    assert line.startswith(f"basicsr test: error: '{model}' does not fit ECMASR as configured: Checkpoint does not "
                           'fit ECMASR(upscale=2, in_ch=3, width=16,')
    assert 'head.weight: (8, 3, 3, 3) vs (16, 3, 3, 3)' in line and 'Check the network options (network_g)' in line


def test_force_yml_value_that_is_not_yaml(previous_run):
    root, opt_file, _, _ = previous_run
    before = experiments_state(root)
    proc = run_cli(['train', '-opt', str(opt_file), '--force_yml', 'train:scheduler:periods=[6'], cwd=root)
    assert proc.returncode == 1
    assert only_error_line(proc).startswith("basicsr train: error: --force_yml 'train:scheduler:periods=[6': "
                                            "'[6' is not a valid value (")
    assert experiments_state(root) == before


# 7. verify names the unpaired keys -------------------------------------------------------------------

def test_verify_names_keys_missing_on_each_side_when_counts_are_equal(tmp_path):
    from datasets_prep.common import update_manifest
    (gt_lmdb, lq_lmdb), (gt_dir, lq_dir) = make_lmdb_pair(str(tmp_path))
    # the same number of LQ images as GT images, one renamed: counts agree, keys do not
    os.rename(osp.join(lq_dir, 'img04.png'), osp.join(lq_dir, 'img4.png'))
    root = osp.dirname(gt_dir)
    update_manifest(root, 'tiny', [{'kind': 'folders', 'lq': 'lq', 'gt': 'gt', 'filename_tmpl': '{}', 'scale': 2,
                                    'count': 6}])
    proc = run_prep(['verify', root, '--no-decode'], cwd=tmp_path)
    assert proc.returncode == 1
    problems = [line for line in proc.stdout.splitlines() if line.startswith('PROBLEM')]
    assert problems == [f"PROBLEM: unpaired images: both hold 6 images but different ones; only in '{lq_dir}': "
                        f"img4.png; only in '{gt_dir}': img04.png."], proc.stdout

    from datasets_prep.lmdb_writer import LmdbWriter
    other = osp.join(tmp_path, 'other.lmdb')
    writer = LmdbWriter(other)
    for i in (0, 1, 2, 3, 5, 7):
        writer.put_image(f'img{i:02d}', cv2.imread(osp.join(lq_dir, 'img00.png')))
    writer.commit()
    before = digest(gt_lmdb)
    proc = run_prep(['verify', other, gt_lmdb, '--no-decode'], cwd=tmp_path)
    assert proc.returncode == 1
    problems = [line for line in proc.stdout.splitlines() if line.startswith('PROBLEM')]
    assert problems == [f"PROBLEM: unpaired keys: both hold 6 keys but different ones; only in '{other}': img07; "
                        f"only in '{gt_lmdb}': img04."], proc.stdout
    assert digest(gt_lmdb) == before


# 6. a killed sample run is resumed in place -----------------------------------------------------------

def test_sample_killed_midway_is_resumed_in_place(tmp_path):
    import signal
    import time
    dst = tmp_path / 'datasets' / 'DIV2K'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, '-m', 'datasets_prep', 'sample', '--task', 'sr', '--dst', str(dst)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # kill it while it writes the outputs: a .partial LMDB or the first PNG in dst
    while time.time() < deadline and proc.poll() is None:
        found = [p for p in dst.rglob('*') if p.name.endswith('.partial') or p.suffix == '.png'] if dst.exists() else []
        if found:
            break
        time.sleep(0.05)
    assert proc.poll() is None, 'the sample finished before it could be interrupted'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (dst / 'SAMPLE.json').exists()
    assert [p.name for p in tmp_path.joinpath('datasets').iterdir() if p.name.startswith('.sample_source_')]

    rerun = run_prep(['sample', '--task', 'sr', '--dst', str(dst)], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (dst / 'SAMPLE.json').is_file() and not (dst / '.SAMPLE.partial.json').exists()
    assert sorted(p.name for p in (tmp_path / 'datasets').iterdir()) == ['DIV2K'], 'no hidden source tree left'
    check = run_prep(['verify', str(dst)], cwd=tmp_path)
    assert check.returncode == 0, check.stdout[-2000:]


def test_sample_still_refuses_a_folder_of_real_data(tmp_path):
    dst = tmp_path / 'DIV2K'
    dst.mkdir()
    (dst / 'mine.png').write_bytes(b'x')
    proc = run_prep(['sample', '--task', 'sr', '--dst', str(dst)], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: '{dst}' already holds data that is not a sample (no SAMPLE.json); "
                                   'choose another --dst.')
    assert sorted(os.listdir(dst)) == ['mine.png']


# 8. a corrupt image is reported once ------------------------------------------------------------------

def test_verify_reports_a_corrupt_hr_image_shared_by_three_scales_once(tmp_path):
    from datasets_prep.common import update_manifest
    gt_dir, _ = make_sr_folders(str(tmp_path / 'set'), n=3, size=48)
    root = osp.dirname(gt_dir)
    groups = []
    for scale in (2, 3, 4):
        lq = osp.join(root, f'X{scale}')
        os.makedirs(lq)
        for name in sorted(os.listdir(gt_dir)):
            img = cv2.imread(osp.join(gt_dir, name))
            cv2.imwrite(osp.join(lq, f'{osp.splitext(name)[0]}x{scale}.png'),
                        cv2.resize(img, (48 // scale, 48 // scale), interpolation=cv2.INTER_AREA))
        groups.append({'kind': 'folders', 'lq': f'X{scale}', 'gt': 'gt', 'filename_tmpl': f'{{}}x{scale}',
                       'scale': scale, 'count': 3})
    update_manifest(root, 'tiny', groups)
    bad = osp.join(gt_dir, 'img01.png')
    corrupt_png(bad)
    proc = run_prep(['verify', root], cwd=tmp_path)
    assert proc.returncode == 1
    problems = [line for line in proc.stdout.splitlines() if line.startswith('PROBLEM')]
    assert problems == [f"PROBLEM: '{bad}' does not decode."], proc.stdout
    assert proc.stdout.splitlines()[-1] == 'verify: FAILED, 1 problem(s)'
