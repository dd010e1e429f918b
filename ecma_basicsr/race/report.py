"""The race's report: ``race.json`` (everything measured), ``results.md`` (tables and findings) and
``curves.png`` (validation PSNR against iteration, one panel per task).

``python -m ecma_basicsr.race.report FOLDER`` re-renders the markdown and the plot from ``FOLDER/race.json``.
The findings are computed from the numbers (mean PSNR over the task's test sets): the full ECMA
against each ablation and each rival, so the text states where ECMA stands whatever the result.
"""
import argparse
import json
import os
import os.path as osp

import numpy as np


def mean_psnr(entry):
    """Mean PSNR of a contender over its test sets (None when it has no scores)."""
    scores = entry.get('scores')
    return float(np.mean([s['psnr'] for s in scores.values()])) if scores else None


def findings(task_name, task):
    """Sentences comparing the full ECMA with every other contender of the task, by mean test PSNR."""
    entries = task['contenders']
    ecma = next((c for c in entries if c['role'] == 'ecma'), None)
    if ecma is None or mean_psnr(ecma) is None:
        return [f'{task_name}: no trained full ECMA to compare with.']
    base = mean_psnr(ecma)
    lines = []
    for role, word in (('ablation', 'its ablation'), ('rival', '')):
        for c in entries:
            if c['role'] != role:
                continue
            other = mean_psnr(c)
            if other is None:
                lines.append(f"{task_name}: {c['label']} failed ({c.get('error', 'no scores')[:120]}).")
                continue
            diff = base - other
            verb = 'beats' if diff > 0 else 'trails' if diff < 0 else 'ties'
            what = f"{word} {c['label']}".strip()
            lines.append(f"{task_name}: {ecma['label']} {verb} {what} by {abs(diff):.3f} dB "
                         f"(mean over {', '.join(ecma['scores'])}: {base:.3f} vs {other:.3f} dB).")
    return lines


def _fmt_set(score):
    return f"{score['psnr']:.3f} / {score['ssim']:.4f}" if score and score.get('psnr') is not None else '-'


def task_table(task):
    """Markdown rows of one task: the floor, then every contender."""
    sets = list(task['floors'])
    head = ['network', 'role', 'params', 'MACs/pixel', 'train (s)'] + [f'{s} PSNR / SSIM' for s in sets] + \
        ['held-out val PSNR (last)']
    rows = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    floor = 'identity (noisy input)' if task['scale'] == 1 else 'bicubic'
    rows.append(f'| {floor} | floor | - | - | - | ' + ' | '.join(_fmt_set(task['floors'][s]) for s in sets) + ' | - |')
    for c in task['contenders']:
        scores = c.get('scores', {})
        last = f"{c['curve'][-1][1]:.3f} @ {c['curve'][-1][0]}" if c.get('curve') else '-'
        cells = [c['label'], c['role'], f"{c['params'] / 1e3:.1f} k", f"{c['macs_per_pixel'] / 1e3:.2f} k",
                 f"{c['train_seconds']:.0f}" if 'train_seconds' in c else '-'] + \
            [_fmt_set(scores.get(s)) if 'error' not in c else 'failed' for s in sets] + [last]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return rows


def write_markdown(path, run, plot_name):
    lines = ['# Equal-budget training race', '',
             f"Command: `{run['command']}`  ",
             f"Started {run['started']}; wall time {run['wall_seconds'] / 60:.1f} min; "
             f"{run['jobs']} job(s) at a time, {run['threads']} torch thread(s) each; load average at start "
             f"{run['load_at_start'][0]:.2f}, at end {run['load_at_end'][0]:.2f}; code `{run.get('git', '?')}`, "
             f"{run.get('cpu', 'CPU')}; training seed {run.get('seed', '?')}."
             + (' **Quick mode** (few iterations, first images of each set only): a smoke run, not a result.'
                if run.get('quick') else ''), '']
    for name, task in run['tasks'].items():
        what = f"Gaussian noise sigma {task['sigma']:g}, RGB PSNR/SSIM" if task['scale'] == 1 else \
            f"SR x{task['scale']}, PSNR/SSIM on Y, border {task['scale']}"
        lines += [f'## {name}: {what}', '',
                  f"{task['iters']} iterations, batch {task['batch']}, {task['crop']} px ground-truth crops, AdamW "
                  f"lr 1e-3 with cosine decay for every contender; MACs per output pixel (FFT work included) spread "
                  f"{task['budget_spread']:.1%}. Test sets: "
                  + ', '.join(f'`{t}`' for t in task['testsets']) + '.', '']
        lines += task_table(task) + ['']
    lines += ['## Findings (mean test PSNR over the sets of each task)', '']
    lines += [f'- {s}' for name, task in run['tasks'].items() for s in findings(name, task)]
    lines += ['', f'![validation PSNR against iteration]({plot_name})', '',
              'Train time is the wall time of `basicsr train` (validations included) while '
              f"{run['jobs']} job(s) shared the machine. The curves are the validation PSNR on the two held-out "
              'photos of the sample set (chelsea, coffee), logged by the engine to `metrics.jsonl`.', '']
    with open(path, 'w') as f:
        f.write('\n'.join(lines))


def plot_curves(path, run):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    tasks = list(run['tasks'].items())
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    styles = {'ecma': dict(lw=2.2), 'ablation': dict(lw=1.4, ls='--'), 'rival': dict(lw=1.4, ls='-.')}
    for ax, (name, task) in zip(axes[0], tasks):
        for c in task['contenders']:
            if c.get('curve'):
                it, psnr = zip(*c['curve'])
                ax.plot(it, psnr, marker='o', ms=3, label=c['label'], **styles.get(c['role'], {}))
        ax.set_title(f"{name} ({task['iters']} iterations)")
        ax.set_xlabel('iteration')
        ax.set_ylabel('validation PSNR (dB), held-out photos')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(out_dir, run):
    """Write ``results.md`` and ``curves.png`` for ``run``; returns their paths."""
    md, png = osp.join(out_dir, 'results.md'), osp.join(out_dir, 'curves.png')
    plot_curves(png, run)
    write_markdown(md, run, osp.basename(png))
    return [md, png]


def write_report(out_dir, run):
    """``race.json`` plus :func:`render`; returns the three paths."""
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, 'race.json')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(run, f, indent=1)
    os.replace(tmp, path)
    return [path] + render(out_dir, run)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Re-render a race report from its race.json.')
    parser.add_argument('folder')
    args = parser.parse_args(argv)
    with open(osp.join(args.folder, 'race.json')) as f:
        run = json.load(f)
    for p in render(args.folder, run):
        print(p)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
