"""``basicsr report`` on a fabricated experiments / results / bench tree: one log written by a real ``basicsr
test`` run, hand-made logs in BasicSR's format (two runs of one row, a training log, a partial, a malformed
and an unreadable log), a row without any log, and a bench run."""
import json
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import yaml
from helpers import run_cli, smooth_image

from ecma_basicsr import report
from ecma_basicsr.paper_tables import load_index

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def basicsr_log(path, stamp, datasets, metrics=('psnr', 'ssim'), announce=None, iters=None, garble=None):
    """A log in the format basicsr 1.4.2 writes (``test_pipeline`` + ``SRModel._log_validation_metric_values``).

    ``datasets``: {name: (psnr, ssim)}; ``announce``: the datasets the run announced (default: all);
    ``iters``: write it as a training log, one validation per iteration listed.
    """
    t = f'{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]},123'
    lines = [f'{t} INFO: ', '                ____                _       _____  ____', f'{t} INFO: ',
             'Version Information: ', '\tBasicSR: 1.4.2', f'{t} INFO: ', '  name: run', '  model_type: SRModel']
    if iters is None:
        lines += [f'{t} INFO: Number of test images in {d}: 3' for d in (announce or datasets)]
        lines += [f'{t} INFO: Model [SRModel] is created.']
    for it in iters or [None]:
        if it is not None:
            lines += [f'{t} INFO: [run..][epoch:  3, iter: {it:8,d}, lr:(1.000e-03,)] [eta: 0:00:01] l_pix: 1.0e-02']
        for name, values in datasets.items():
            if iters is None:
                lines.append(f'{t} INFO: Testing {name}...')
            lines.append(f'{t} INFO: Validation {name}')
            for m, v in zip(metrics, values):
                value = garble if garble and m == 'psnr' else f'{v:.4f}'
                best = f'\tBest: {v:.4f} @ {it if it is not None else "run"} iter'
                lines.append(f'\t # {m}: {value}{best}')
            lines.append('')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    """results/, experiments/ and a bench run, fabricated (plus one real basicsr test run)."""
    root = tmp_path_factory.mktemp('report')
    res, exp = root / 'results', root / 'experiments'
    # ECMA-T on GoPro (Table 2): an older and a newer complete run; the newer wins
    basicsr_log(res / 'ECMA-T_GoPro_test_archived_20260101_090000' / 'test_ECMA-T_GoPro_test_20260101_080000.log',
                '20260101_080000', {'GoPro': (31.5, 0.95)})
    basicsr_log(res / 'ECMA-T_GoPro_test' / 'test_ECMA-T_GoPro_test_20260102_100000.log', '20260102_100000',
                {'GoPro': (33.0512, 0.9601)})
    # the same run name holds the HIDE test (Table 3 uses options/table3_hide/ECMA-T_HIDE_test.yml, same name)
    basicsr_log(res / 'ECMA-T_GoPro_test' / 'test_ECMA-T_GoPro_test_20260103_100000.log', '20260103_100000',
                {'HIDE': (30.7, 0.931)})
    # IMDN (Table 5): a run that stopped after Set5 -> partial, skipped
    basicsr_log(res / 'IMDN_x4_test' / 'test_IMDN_x4_test_20260104_100000.log', '20260104_100000',
                {'Set5': (32.21, 0.8948)}, announce=['Set5', 'Set14', 'B100', 'Urban100', 'Manga109'])
    # NAFNet GoPro (Table 2): a value that is not a number -> malformed, skipped
    basicsr_log(res / 'NAFNet_GoPro-width64_GoPro-test' / 'test_NAFNet_GoPro-width64_GoPro-test_20260105_100000.log',
                '20260105_100000', {'GoPro-test': (33.7, 0.967)}, garble='3x.71')
    # GRL-B (Table 2): bytes that are not text -> unreadable, skipped
    grl = res / 'GRL_B_GoPro_test' / 'test_GRL_B_GoPro_test_20260106_100000.log'
    os.makedirs(grl.parent)
    grl.write_bytes(b'\x89PNG\r\n\x1a\n\xff\xfe\x00garbage')
    # Table 8 "Ele-wise Addition": no test log, the training log's last GoPro validation is used
    basicsr_log(exp / 'ECMA-T_GoPro_table8_addition' / 'train_ECMA-T_GoPro_table8_addition_20260107_100000.log',
                '20260107_100000', {'GoPro': (32.4, 0.9551)}, iters=[100000, 200000])
    # ECMA-B on GoPro: nothing at all (the missing log)
    # a bench run
    bench = root / 'bench_out'
    os.makedirs(bench)
    with open(bench / 'results.csv', 'w') as f:
        f.write('label,kind,params,gmacs@256x256,status@256x256,lat_mean_ms@1280x720,lat_median_ms@1280x720,status\n'
                'ECMA-T,network,10614035,16.1647,ok,31.5,30.9,ok\n'
                'ECMA-B,network,19649155,64.0966,ok,,44.0,ok\n'
                'ECMA-S,network,32138147,,over budget: 40 s,,,ok\n')
    with open(bench / 'provenance.json', 'w') as f:
        json.dump({'date': '2026-01-08T12:30:00+00:00', 'device_name': 'Test GPU'}, f)
    return root


@pytest.fixture(scope='module')
def real_run(tree):
    """A real ``basicsr test`` log under the name of Table 4's ECMA-B RealBlur-J file, scored with RealBlur's metric.

    A tiny random ECMA (the number is not the point; the log is BasicSR's own).
    """
    rng = np.random.default_rng(0)
    data = tree / 'pairs'
    for sub in ('input', 'target'):
        os.makedirs(data / sub)
    for i in range(2):
        gt = smooth_image(rng, 72, 88)
        cv2.imwrite(str(data / 'target' / f'{i}.png'), gt)
        cv2.imwrite(str(data / 'input' / f'{i}.png'), cv2.GaussianBlur(gt, (0, 0), 1.2))
    with open(osp.join(REPO, 'options', 'table4_realblur', 'ECMA-B_RealBlur-J_test.yml')) as f:
        opt = yaml.safe_load(f)
    opt['datasets']['test_1'].update(dataroot_gt=str(data / 'target'), dataroot_lq=str(data / 'input'),
                                     io_backend={'type': 'disk'})
    opt.update(num_gpu=0, network_g={'type': 'ECMA', 'variant': 'T', 'width': 8, 'enc_blocks': [1, 1, 1, 1],
                                     'large_kernel_mode': 'spatial'}, path={'pretrain_network_g': None})
    option = tree / 'realblur_tiny.yml'
    with open(option, 'w') as f:
        yaml.safe_dump(opt, f)
    res = run_cli(['test', '-opt', str(option)], cwd=tree)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = list((tree / 'results' / 'ECMA-B_RealBlur-J_test').glob('test_ECMA-B_RealBlur-J_test_*.log'))
    assert len(logs) == 1
    return logs[0]


def run_report(tree, *args):
    cwd = os.getcwd()
    os.chdir(tree)  # the report shows paths relative to where it runs, like the CLI
    try:
        out = tree / 'report.md'
        code = report.main(['--results', 'results', '--experiments', 'experiments', '--bench', 'bench_out',
                            '--out', str(out), *args])
        return code, out.read_text() if out.exists() else ''
    finally:
        os.chdir(cwd)


def line(text, *parts):
    """The one report line that contains every part."""
    found = [ln for ln in text.splitlines() if all(p in ln for p in parts)]
    assert len(found) == 1, (parts, found)
    return found[0]


def section(md, table):
    """The report's part for one table."""
    numbers = [int(m) for m in re.findall(r'^## Table (\d+)', md, re.M)]
    return re.split(r'^## ', md, flags=re.M)[1:][numbers.index(table)]


def test_real_basicsr_log_is_read(tree, real_run):
    log = report.parse_log(str(real_run), 'test')
    assert log.problem is None and log.expected == ['RealBlur-J']
    text = real_run.read_text()
    psnr = float(re.search(r'# psnr: (\S+)', text).group(1))
    ssim = float(re.search(r'# ssim: (\S+)', text).group(1))
    assert log.results == {'RealBlur-J': {'psnr': psnr, 'ssim': ssim}}
    code, md = run_report(tree, '--table', '4')
    assert code == 0
    row = line(md, 'ECMA-B, one network per set', 'RealBlur-J PSNR (dB)')
    assert f'| 32.72 | {psnr:.3f} | {psnr - 32.72:+.3f} |' in row
    assert f'results/ECMA-B_RealBlur-J_test/{real_run.name}' in row
    assert line(md, 'ECMA-B, one network per set', 'RealBlur-J SSIM').count(f'{ssim:.4f}') == 1
    # R was not run; the GFLOPs come from the bench run
    r_line = line(md, 'ECMA-B, one', 'RealBlur-R PSNR /')
    assert 'no usable test log under results/ECMA-B_RealBlur-R_test/' in r_line
    assert '(run: `basicsr test -opt options/table4_realblur/ECMA-B_RealBlur-R_test.yml`)' in r_line
    assert '| 63.0 | 64.10 | +1.10 |' in line(md, 'ECMA-B, one network per set', 'GFLOPs')


def test_report_on_the_fabricated_tree(tree):
    code, md = run_report(tree, '--table', '2', '3', '5', '8', '10')
    assert code == 0
    assert [int(n) for n in re.findall(r'^## Table (\d+):', md, re.M)] == [2, 3, 5, 8, 10]
    t2, t3, t8, t10 = (section(md, n) for n in (2, 3, 8, 10))
    # newest complete log of the row, with its file and date
    psnr = line(t2, '| ECMA-T |', 'PSNR (dB)')
    assert '| 33.19 | 33.051 | -0.139 |' in psnr
    assert 'results/ECMA-T_GoPro_test/test_ECMA-T_GoPro_test_20260102_100000.log (2026-01-02 10:00)' in psnr
    assert '| 0.962 | 0.9601 | -0.0019 |' in line(t2, '| ECMA-T |', '| SSIM |')
    # the HIDE row finds its dataset in the same run folder
    assert '| 30.89 | 30.700 | -0.190 |' in line(t3, '| ECMA-T |', 'PSNR (dB)')
    # the bench run: GFLOPs and, for Table 10, the mean latency (median when the mean is empty)
    assert '| 15.9 | 16.16 | +0.26 |' in line(t2, '| ECMA-T |', 'GFLOPs')
    assert '`gmacs@256x256` (2026-01-08 12:30, Test GPU)' in line(t2, '| ECMA-T |', 'GFLOPs')
    assert '| 26 | 31.5 | +5.5 |' in line(t10, '| ECMA-T |', 'Time (ms)')
    assert '| 39 | 44.0 | +5.0 |' in line(t10, '| ECMA-B |', 'Time (ms)')
    assert "bench row 'ECMA-S': over budget: 40 s" in line(t10, '| ECMA-S |', 'FLOPS')
    # a training log stands in when there is no test log
    addition = line(t8, 'Ele-wise Addition', 'PSNR')
    assert '| 32.36 | 32.400 | +0.040 |' in addition and 'validation at iter 200,000' in addition
    # rows without results say so, with the command that makes them
    missing = line(t2, '| ECMA-B |', 'no results')
    assert '| PSNR / SSIM | 34.14 / 0.969 |' in missing
    assert 'no usable test log under results/ECMA-B_GoPro_test/' in missing
    assert '`basicsr test -opt options/table2_gopro/ECMA-B_GoPro_test.yml`' in missing
    assert 'not implemented here' in line(t2, '| MIMO [10] |')
    assert '2 of 17 paper rows with results.' in t2  # ECMA-T, and ECMA-B through its bench row


def test_bad_logs_are_listed_and_skipped(tree):
    code, md = run_report(tree, '--table', '2', '5')
    assert code == 0
    skipped = md.split('## Skipped logs', 1)[1]
    assert 'test_IMDN_x4_test_20260104_100000.log`: partial run: no results for Set14, B100, Urban100, Manga109' \
        in skipped
    assert "test_NAFNet_GoPro-width64_GoPro-test_20260105_100000.log`: line" in skipped
    assert "the value of 'psnr' is not a number ('3x.71')" in skipped
    assert 'test_GRL_B_GoPro_test_20260106_100000.log`: cannot be read as text' in skipped
    # their rows: no results, not a crash and not the partial run's Set5 value
    assert 'no usable test log under results/IMDN_x4_test/' in line(md, 'IMDN [17]', 'no results')
    assert '32.210' not in md
    assert 'no usable test log' in line(md, 'NAFNet [7], GoPro, width 64', 'no results')


def test_truncated_validation_and_non_logs(tmp_path):
    path = tmp_path / 'test_x_20260101_000000.log'
    basicsr_log(path, '20260101_000000', {'Set5': (30.0, 0.9), 'Set14': (28.0, 0.8)})
    text = path.read_text()
    path.write_text(text[:text.rindex('# ssim')])  # killed while writing the last validation
    assert 'validation of Set14 is incomplete (psnr)' in report.parse_log(str(path), 'test').problem
    path.write_text('just some text\n')
    assert report.parse_log(str(path), 'test').problem.startswith('not a BasicSR log')
    train = tmp_path / 'train_y_20260101_000000.log'
    basicsr_log(train, '20260101_000000', {'GoPro': (30.0, 0.9)}, iters=[5000, 10000])
    train.write_text(train.read_text().rsplit('\t # ssim', 1)[0])  # stopped during the second validation
    log = report.parse_log(str(train), 'train')
    assert log.problem is None and log.iters == {'GoPro': 5000} and log.results['GoPro']['psnr'] == 30.0


def test_command_line(tree, capsys):
    from ecma_basicsr.cli import SUBCOMMANDS, main
    assert SUBCOMMANDS['report'][1] == 'ecma_basicsr.report:main'
    assert main(['report', '--table', '11']) == 2
    assert "--table 11: the paper's tables are numbered 1-10" in capsys.readouterr().err
    assert main(['report', '--bench', str(tree / 'nowhere')]) == 2
    assert 'no results.csv there' in capsys.readouterr().err
    cwd = os.getcwd()
    os.chdir(tree / 'pairs' if (tree / 'pairs').exists() else tree)
    try:  # no results/ experiments/ here: every row says so, nothing crashes
        assert main(['report', '--table', '9']) == 0
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert 'Test logs: results/ (not found)' in out and '0 of 10 paper rows with results.' in out


def test_every_measured_column_can_be_found(tree):
    """Each index column with a source resolves without error for every runnable row (no crash on any table)."""
    sources = report.Sources(str(tree / 'results'), str(tree / 'experiments'),
                             [report.load_bench(str(tree / 'bench_out'))])
    for table in load_index():
        for row in table.rows:
            for column in table.columns:
                if row.implemented and column.source:
                    found = sources.value(table, row, column)
                    assert (found.value is None) == (found.source is None)
                    assert found.value is not None or found.why
