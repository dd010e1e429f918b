"""``basicsr race``: the configured budget, the option files it writes, the report, and a smoke race."""
import json
import os.path as osp
import struct

import pytest

from ecma_basicsr.race import RaceError
from ecma_basicsr.race.contenders import BUDGET_TOLERANCE, TASKS, budget, check_budget, losses_of, select
from ecma_basicsr.race.report import findings, write_report
from ecma_basicsr.race.run import main as race_main
from ecma_basicsr.race.run import race_options

ABLATION_TOL = 0.05  # the ablations against the full ECMA, params and MACs (paper Sec. 4.5: aligned sizes)


@pytest.mark.parametrize('task', list(TASKS))
def test_configured_contenders_share_the_budget(task):
    task = TASKS[task]
    sizes = budget(task)
    assert check_budget(task, sizes) <= BUDGET_TOLERANCE
    ecma = next(c for c in task.contenders if c.role == 'ecma')
    params, macs = sizes[ecma.label]
    for c in task.contenders:
        if c.role == 'ablation':
            p, m = sizes[c.label]
            assert abs(p / params - 1) <= ABLATION_TOL and abs(m / macs - 1) <= ABLATION_TOL, c.label
    roles = [c.role for c in task.contenders]
    assert roles.count('ecma') == 1 and roles.count('ablation') == 2 and roles.count('rival') == 2


def test_budget_check_names_the_outlier():
    sizes = {'A': (1, 1000.0), 'B': (1, 1100.0), 'C': (1, 1300.0)}
    with pytest.raises(RaceError, match=r'sr: C needs 1300 MACs per pixel, 1.30x of A \(1000\)'):
        check_budget(TASKS['sr'], sizes)
    assert check_budget(TASKS['sr'], {'A': (1, 1000.0), 'B': (1, 1150.0)}) == pytest.approx(0.15)


def test_selection_errors_list_the_choices():
    with pytest.raises(RaceError, match='unknown task deblur; choose from denoise, sr'):
        select(['deblur'])
    with pytest.raises(RaceError, match='unknown contender NAFNet-x.*choose from .*ECMA-SR'):
        select(['sr'], ['NAFNet-x'])
    [(task, picked)] = select(['sr'], ['ECMA-SR', 'SwinIR'])
    assert task.name == 'sr' and [c.label for c in picked] == ['ECMA-SR', 'SwinIR']


@pytest.mark.parametrize('task', list(TASKS))
def test_options_differ_only_in_network_and_loss(task, engine, tmp_path):
    from ecma_basicsr.engine.options_check import (
        check_network_arguments,
        check_registered_types,
        check_training,
    )
    task = TASKS[task]
    opts = [race_options(task, c, str(tmp_path), iters=100) for c in task.contenders]
    for opt, c in zip(opts, task.contenders):
        check_registered_types(opt)
        check_network_arguments(opt)
        check_training(opt)
        assert opt['network_g'] == c.network
        fixed = {k: v for k, v in opt['train'].items() if not k.endswith('_opt')}
        assert fixed == {k: v for k, v in opts[0]['train'].items() if not k.endswith('_opt')}
        assert opt['datasets'] == opts[0]['datasets'] and opt['manual_seed'] == opts[0]['manual_seed']
        assert {k: v for k, v in opt['train'].items() if k.endswith('_opt')} == losses_of(task.name, c)
    ecma = opts[0]['train']
    assert ecma['pixel_opt']['type'] == 'L1Loss' and ecma['fft_opt']['type'] == 'FFTLoss'


def _fabricated_run():
    def entry(label, role, psnrs, curve=((100, 20.0), (200, 21.0))):
        return dict(label=label, role=role, note='', params=1e5, macs_per_pixel=4e4, train_seconds=12.0,
                    curve=[list(p) for p in curve],
                    scores={s: dict(psnr=p, ssim=0.5, images=2) for s, p in zip(('Set5', 'Set14'), psnrs)})
    failed = dict(label='SwinIR', role='rival', note='', params=1e5, macs_per_pixel=4e4, train_seconds=3.0, curve=[],
                  error='training failed (exit 1); log x.log: boom')
    task = dict(iters=200, crop=96, batch=8, scale=4, sigma=None, budget_spread=0.1,
                testsets=['Set5=sr:a', 'Set14=sr:b'],
                floors={'Set5': dict(psnr=28.0, ssim=0.8, images=2), 'Set14': dict(psnr=24.0, ssim=0.6, images=2)},
                contenders=[entry('ECMA-SR', 'ecma', (30.0, 26.0)), entry('ECMA-SR-add', 'ablation', (29.5, 25.5)),
                            entry('NAFNetSR', 'rival', (30.5, 26.1)), failed])
    return dict(command='basicsr race --tasks sr', started='2026-11-30 00:00:00 UTC', load_at_start=[0.1, 0, 0],
                load_at_end=[2.0, 0, 0], jobs=2, threads=1, quick=False, limit=None, git='abc123', cpu='test CPU',
                wall_seconds=600.0, tasks={'sr': task})


def test_report_states_where_ecma_stands(tmp_path):
    run = _fabricated_run()
    paths = write_report(str(tmp_path), run)
    assert [osp.basename(p) for p in paths] == ['race.json', 'results.md', 'curves.png']
    assert json.load(open(paths[0])) == json.loads(json.dumps(run))
    md = open(paths[1]).read()
    assert '| bicubic | floor | - | - | - | 28.000 / 0.8000 | 24.000 / 0.6000 | - |' in md
    assert '| ECMA-SR | ecma | 100.0 k | 40.00 k | 12 | 30.000 / 0.5000 | 26.000 / 0.5000 | 21.000 @ 200 |' in md
    assert '| SwinIR | rival | 100.0 k | 40.00 k | 3 | failed | failed | - |' in md
    lines = findings('sr', run['tasks']['sr'])
    assert lines[0] == 'sr: ECMA-SR beats its ablation ECMA-SR-add by 0.500 dB (mean over Set5, Set14: 28.000 vs ' \
                       '27.500 dB).'
    assert lines[1].startswith('sr: ECMA-SR trails NAFNetSR by 0.300 dB')
    assert lines[2].startswith('sr: SwinIR failed (training failed')
    assert all(f'- {line}' in md for line in lines)
    with open(paths[2], 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n' and struct.unpack('>II', head[16:24]) == (660, 462)


def test_bad_flags_are_one_line_errors(tmp_path):
    with pytest.raises(RaceError, match='--jobs must be at least 1'):
        race_main(['--jobs', '0'])
    with pytest.raises(RaceError, match=r"test set Set5 not found at '.*nowhere/Set5'; pass --data"):
        race_main(['--tasks', 'sr', '--data', str(tmp_path / 'nowhere')])


def test_smoke_race_trains_scores_and_repeats(tmp_path, shared):
    """Two contenders, a few iterations, one image per set, through basicsr train in subprocesses."""
    data = shared('data')
    args = ['--tasks', 'sr', '--contenders', 'ECMA-SR,NAFNetSR', '--iters', '4', '--limit', '1', '--data', data,
            '--workdir', str(tmp_path / 'work'), '--out', str(tmp_path / 'out')]
    assert race_main(args) == 0
    run = json.load(open(tmp_path / 'out' / 'race.json'))
    task = run['tasks']['sr']
    assert [c['label'] for c in task['contenders']] == ['ECMA-SR', 'NAFNetSR']
    for c in task['contenders']:
        assert 'error' not in c and set(c['scores']) == {'Set5', 'Set14'}
        assert c['scores']['Set5']['images'] == 1 and c['scores']['Set5']['psnr'] > 10
        assert [it for it, _ in c['curve']] == [1, 2, 3, 4]  # val every tenth, at least every iteration
    assert set(task['floors']) == {'Set5', 'Set14'} and task['budget_spread'] < BUDGET_TOLERANCE
    # seeded: the same contender trained again gives the same scores and validation curve
    assert race_main(args[:3] + ['ECMA-SR'] + args[4:-1] + [str(tmp_path / 'again')]) == 0
    again = json.load(open(tmp_path / 'again' / 'race.json'))['tasks']['sr']['contenders'][0]
    first = task['contenders'][0]
    assert again['scores']['Set5']['psnr'] == pytest.approx(first['scores']['Set5']['psnr'], abs=1e-6)
    # to round-off: 'auto' times the large kernel's two exact paths in each run, and under load it may pick
    # the other one (they agree to float32 round-off, ~1e-7 dB here)
    assert [it for it, _ in again['curve']] == [it for it, _ in first['curve']]
    assert [p for _, p in again['curve']] == pytest.approx([p for _, p in first['curve']], abs=1e-5)
