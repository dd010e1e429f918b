"""``basicsr report``: the ECMA paper's Tables 1-10 with our numbers beside the paper's.

For every row of :mod:`ecma_basicsr.paper_tables` (the index of the paper's tables) and every column we can
measure, the report finds our value and says where it came from:

* PSNR / SSIM from BasicSR logs. A row's test option files name their runs (``name:``); ``basicsr test``
  writes ``results/<name>/test_<name>_<time>.log`` (older runs are renamed ``<name>_archived_<time>``). The
  newest complete log with the column's dataset wins. Without one, the last validation of that dataset in
  the training log (``experiments/<train name>/train_<name>_<time>.log``) is used and labelled so.
* GFLOPs, parameters and latency from a ``basicsr bench`` run (``results.csv``, its date and device from
  ``provenance.json``), by the row's bench label.

A log that cannot be read, is not a BasicSR log, has a value that is not a number, or stopped before
every dataset it announced was scored (a partial run) is listed by name with the reason and skipped; the
report never stops on one. Rows we cannot run stay in the report with the paper's numbers.

    basicsr report                           # every table; logs under results/ and experiments/
    basicsr report --table 2 5 --bench bench_out --out report.md
"""
import argparse
import csv
import datetime
import glob
import json
import math
import os
import os.path as osp
import re
import shlex
import sys
from dataclasses import dataclass, field

_TIME_IN_NAME = re.compile(r'_(\d{8}_\d{6})\.log$')
_LOG_LINE = re.compile(r'^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),\d+ (INFO|WARNING|ERROR|DEBUG|CRITICAL): (.*)$')
_VALIDATION = re.compile(r'^Validation (.+?)\s*$')
_METRIC = re.compile(r'^\s*# ([^:]+): (\S+)(?:\s+Best: .*)?$')
_N_IMAGES = re.compile(r'^Number of test images in (.+): (\d+)\s*$')
_ITER = re.compile(r'\biter:\s*([\d,]+)')
# decimals shown for our value when the paper printed none, by unit
_DEFAULT_DECIMALS = {'dB': 2, 'G': 1, 'M': 1, 'ms': 0, None: 3}


class ReportError(ValueError):
    """Bad command-line input (the message names it and the fix)."""


# ------------------------------------------------------------------------------------------------
# BasicSR logs
# ------------------------------------------------------------------------------------------------
@dataclass
class LogFile:
    """What one BasicSR log holds: per dataset its metric values (the last validation of it)."""
    path: str
    kind: str  # 'test' or 'train'
    date: datetime.datetime = None
    results: dict = field(default_factory=dict)  # dataset -> {metric: value}
    iters: dict = field(default_factory=dict)  # dataset -> training iteration of that validation
    expected: list = field(default_factory=list)  # datasets a test run announced
    problem: str = None  # why the log is skipped


def _log_date(path, first_stamp):
    m = _TIME_IN_NAME.search(osp.basename(path))
    for text, fmt in ((m.group(1) if m else None, '%Y%m%d_%H%M%S'), (first_stamp, '%Y-%m-%d %H:%M:%S')):
        if text:
            try:
                return datetime.datetime.strptime(text, fmt)
            except ValueError:
                pass
    try:
        return datetime.datetime.fromtimestamp(os.path.getmtime(path))
    except OSError:
        return None


def parse_log(path, kind):
    """Read a BasicSR ``test_*.log`` / ``train_*.log``; never raises (``problem`` says what is wrong)."""
    log = LogFile(path=path, kind=kind)
    try:
        with open(path, encoding='utf-8', errors='strict') as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        log.problem = f'cannot be read as text ({err.__class__.__name__})'
        log.date = _log_date(path, None)
        return log
    first_stamp, blocks, current, it = None, [], None, None
    for n, line in enumerate(lines, 1):
        m = _LOG_LINE.match(line)
        if m:
            first_stamp = first_stamp or m.group(1)
            message = m.group(3)
            current = None
            v = _VALIDATION.match(message)
            if v:
                current = (v.group(1), {}, it, n)
                blocks.append(current)
                continue
            c = _N_IMAGES.match(message)
            if c:
                log.expected.append(c.group(1))
            i = _ITER.search(message)
            if i:
                it = int(i.group(1).replace(',', ''))
            continue
        if current is not None:
            mm = _METRIC.match(line)
            if mm:
                try:
                    current[1][mm.group(1).strip()] = float(mm.group(2))
                except ValueError:
                    log.problem = f"line {n}: the value of '{mm.group(1).strip()}' is not a number ('{mm.group(2)}')"
            elif line.strip():
                current = None
    log.date = _log_date(path, first_stamp)
    if log.problem:
        return log
    if first_stamp is None:
        log.problem = 'not a BasicSR log (no timestamped log line)'
        return log
    metric_names = set().union(*(b[1] for b in blocks)) if blocks else set()
    for name, values, iteration, line_no in blocks:
        if not values or set(values) != metric_names:
            if kind == 'test':
                log.problem = (f'line {line_no}: the validation of {name} is incomplete '
                               f"({', '.join(sorted(values)) or 'no metric values'}); the run stopped while scoring")
                return log
            continue  # a training run stopped during a validation: the earlier ones stand
        log.results[name] = values
        log.iters[name] = iteration
    if kind == 'test':
        missing = [d for d in log.expected if d not in log.results]
        if not log.expected and not log.results:
            log.problem = 'no test results (not a basicsr test log, or the run stopped before scoring)'
        elif missing:
            log.problem = f"partial run: no results for {', '.join(missing)} (announced {', '.join(log.expected)})"
    return log


def find_logs(root, name, kind):
    """``<root>/<name>/<kind>_<name>_*.log`` and the same in BasicSR's ``<name>_archived_<time>`` folders."""
    if not root or not osp.isdir(root):
        return []
    folders = [osp.join(root, name)] + sorted(glob.glob(osp.join(glob.escape(root), glob.escape(name) + '_archived_*')))
    paths = []
    for folder in folders:
        paths += glob.glob(osp.join(glob.escape(folder), f'{glob.escape(kind)}_{glob.escape(name)}_*.log'))
    return sorted(paths)


# ------------------------------------------------------------------------------------------------
# bench runs
# ------------------------------------------------------------------------------------------------
@dataclass
class BenchRun:
    path: str  # results.csv
    date: datetime.datetime = None
    device: str = None
    rows: dict = field(default_factory=dict)  # label -> csv row


def load_bench(path):
    """A bench output folder (or its results.csv) -> :class:`BenchRun`.

    Raises:
        ReportError: no results.csv there.
    """
    csv_path = osp.join(path, 'results.csv') if osp.isdir(path) else path
    if not osp.isfile(csv_path):
        raise ReportError(f"--bench {path}: no results.csv there; give the --out folder of a `basicsr bench` run.")
    run = BenchRun(path=csv_path)
    with open(csv_path, newline='', encoding='utf-8') as f:
        run.rows = {r['label']: r for r in csv.DictReader(f) if r.get('label')}
    prov = osp.join(osp.dirname(csv_path), 'provenance.json')
    if osp.isfile(prov):
        try:
            with open(prov, encoding='utf-8') as f:
                p = json.load(f)
            run.date = datetime.datetime.fromisoformat(p['date']).replace(tzinfo=None) if p.get('date') else None
            run.device = p.get('device_name') or p.get('device')
        except (ValueError, OSError, KeyError):
            pass
    if run.date is None:
        run.date = datetime.datetime.fromtimestamp(os.path.getmtime(csv_path))
    return run


# ------------------------------------------------------------------------------------------------
# matching rows to results
# ------------------------------------------------------------------------------------------------
@dataclass
class Found:
    value: float = None
    source: str = None  # where it came from (file, date)
    why: str = None  # why there is no value
    fix: tuple = ()  # commands that would produce it


class Sources:
    """Logs and bench runs, parsed once; skipped logs collected for the report."""

    def __init__(self, results_dir, experiments_dir, bench_runs):
        self.results_dir, self.experiments_dir, self.bench_runs = results_dir, experiments_dir, bench_runs
        self._logs, self._names = {}, {}
        self.skipped = {}  # path -> reason

    def _parsed(self, path, kind):
        if path not in self._logs:
            log = parse_log(path, kind)
            self._logs[path] = log
            if log.problem:
                self.skipped[path] = log.problem
        return self._logs[path]

    def run_name(self, option_path):
        if option_path not in self._names:
            from ecma_basicsr.paper_tables import option_file
            try:
                opt = option_file(option_path)
            except Exception as err:  # a broken option file must not end the report
                opt, self.skipped[option_path] = None, f'option file unreadable ({err.__class__.__name__})'
            self._names[option_path] = opt.get('name') if isinstance(opt, dict) else None
        return self._names[option_path]

    def logs(self, option_paths, root, kind):
        """Usable logs of these option files' runs, newest first."""
        out = []
        for path in option_paths:
            name = self.run_name(path)
            if name:
                out += [self._parsed(p, kind) for p in find_logs(root, name, kind)]
        return sorted((log for log in out if not log.problem), key=lambda g: g.date or datetime.datetime.min,
                      reverse=True)

    def _datasets(self, option_path):
        from ecma_basicsr.paper_tables import option_file
        try:
            opt = option_file(option_path) or {}
            return [d.get('name') for d in (opt.get('datasets') or {}).values() if isinstance(d, dict)]
        except Exception:  # reported by run_name
            return []

    def test_files(self, row, dataset):
        """The row's test option files that test ``dataset`` (all of them if none says so)."""
        files = [p for p in row.test if dataset in self._datasets(p)]
        return files or list(row.test)

    def log_value(self, row, column):
        dataset = row.dataset_name(column.set)
        files = self.test_files(row, dataset)
        test_logs = self.logs(files, self.results_dir, 'test')
        for log in test_logs:
            value = log.results.get(dataset, {}).get(column.metric)
            if value is not None:
                return Found(value, f'{_show(log.path)} ({_when(log.date)})')
        for log in self.logs(row.train, self.experiments_dir, 'train'):
            value = log.results.get(dataset, {}).get(column.metric)
            if value is not None:
                it = log.iters.get(dataset)
                at = f', validation at iter {it:,}' if it is not None else ', validation during training'
                return Found(value, f'{_show(log.path)} ({_when(log.date)}{at})')
        if not files:
            return Found(why='no test option file for this row')
        names = [n for n in (self.run_name(p) for p in files) if n]
        if not names:
            return Found(why=f"option file {', '.join(files)} not found")
        where = ', '.join(f'{_show(osp.join(self.results_dir or "results", n))}/' for n in dict.fromkeys(names))
        fix = tuple(f'basicsr test -opt {f}' for f in files)
        if not test_logs:
            return Found(why=f'no usable test log under {where}', fix=fix)
        return Found(why=f'not in the test logs under {where}', fix=fix)

    def bench_value(self, table, row, column):
        if not row.bench:
            return Found(why='no bench network for this row')
        if not self.bench_runs:
            return Found(why='no bench run given (--bench)', fix=(f'basicsr bench --nets {shlex.quote(row.bench)}',))
        label, keys = row.bench_label, table.bench_columns(column, row)
        seen = False
        for run in sorted(self.bench_runs, key=lambda r: r.date or datetime.datetime.min, reverse=True):
            rec = run.rows.get(label)
            if rec is None:
                continue
            seen = True
            for key in keys:
                text = (rec.get(key) or '').strip()
                if text:
                    try:
                        value = float(text) * column.bench_scale
                    except ValueError:
                        continue
                    device = f', {run.device}' if run.device else ''
                    return Found(value, f'{_show(run.path)} `{key}` ({_when(run.date)}{device})')
            status = (rec.get(f"status@{keys[0].split('@')[-1]}") if '@' in keys[0] else rec.get('status')) or ''
            if status and status != 'ok':
                return Found(why=f"bench row '{label}': {status}")
        why = f"bench row '{label}' has no {' / '.join(keys)}" if seen else f"no bench row '{label}'"
        return Found(why=why, fix=(f'basicsr bench --nets {shlex.quote(row.bench)}',))

    def value(self, table, row, column):
        if column.source == 'log':
            return self.log_value(row, column)
        if column.source == 'bench':
            return self.bench_value(table, row, column)
        return None


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------
def _show(path):
    rel = osp.relpath(path)
    return rel if not rel.startswith('..') else path


def _when(date):
    return date.strftime('%Y-%m-%d %H:%M') if date else 'date unknown'


def _decimals(paper, unit):
    try:
        float(paper)
    except ValueError:
        return _DEFAULT_DECIMALS.get(unit, 3)
    return len(paper.split('.')[1]) if '.' in paper else 0


def format_value(value, paper, unit):
    """Our value with one more decimal than the paper printed (``inf`` stays ``inf``)."""
    if value is None:
        return ''
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f'{value:.{_decimals(paper, unit) + 1}f}'


def format_diff(value, paper, unit):
    try:
        ref = float(paper)
    except ValueError:
        return ''
    if value is None or not math.isfinite(value):
        return ''
    return f'{value - ref:+.{_decimals(paper, unit) + 1}f}'


def _cell(text):
    return str(text).replace('|', '\\|').replace('\n', ' ')


def _label(column):
    return f'{column.label} ({column.unit})' if column.unit else column.label


def table_report(table, sources):
    """Markdown for one table: per row and measurable column the paper's value, ours, the difference, the source."""
    lines = [f'## Table {table.table}: {table.title}', '']
    if table.where:
        lines += [table.where, '']
    lines += ['| Row | Value | Paper | Ours | Diff | Source |', '| --- | --- | --- | --- | --- | --- |']
    measured = [c for c in table.columns if c.source]
    counts = {'rows': 0, 'with results': 0}
    for row in table.rows:
        name = ('(extra) ' if row.extra else '') + row.label
        if not row.extra:
            counts['rows'] += 1
        all_cols = ' / '.join(c.label for c in table.columns)
        all_paper = ' / '.join(row.paper[c.key] for c in table.columns)
        if not row.implemented:
            lines.append(f'| {_cell(name)} | {_cell(all_cols)} | {_cell(all_paper)} | not implemented here | | |')
            continue
        found = {c.key: sources.value(table, row, c) for c in measured}
        if not any(f.value is not None for f in found.values()):
            reasons = list(dict.fromkeys(f.why for f in found.values() if f.why))
            fixes = list(dict.fromkeys(c for f in found.values() for c in f.fix))
            lines.append(f"| {_cell(name)} | {_cell(all_cols)} | {_cell(all_paper)} | no results | | "
                         f"{_cell('; '.join(reasons) + _fix(fixes))} |")
            continue
        counts['with results'] += 0 if row.extra else 1
        missing = {}
        for c in measured:
            f, paper = found[c.key], row.paper[c.key]
            if f.value is None:
                missing.setdefault((f.why, f.fix), []).append(c)
            else:
                lines.append(f'| {_cell(name)} | {_cell(_label(c))} | {paper} | {format_value(f.value, paper, c.unit)} '
                             f'| {format_diff(f.value, paper, c.unit)} | {_cell(f.source)} |')
        for (why, fix), cols in missing.items():  # one line per reason, not one per column
            lines.append(f"| {_cell(name)} | {_cell(' / '.join(c.label for c in cols))} | "
                         f"{_cell(' / '.join(row.paper[c.key] for c in cols))} | no results | | "
                         f"{_cell(why + _fix(fix))} |")
    lines += ['', f"{counts['with results']} of {counts['rows']} paper rows with results."]
    return '\n'.join(lines)


def _fix(commands):
    return f" (run: {'; '.join(f'`{c}`' for c in commands)})" if commands else ''


def render(tables, sources, command=''):
    head = ['# The ECMA paper beside our runs', '',
            f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}" + (f' by `{command}`' if command else '')
            + '. Test logs: ' + _dir_note(sources.results_dir) + '; training logs: '
            + _dir_note(sources.experiments_dir) + '; bench: '
            + (', '.join(_show(r.path) for r in sources.bench_runs) or 'none') + '.',
            'Ours has one more decimal than the paper printed; Diff = ours - paper.', '']
    body = [table_report(t, sources) for t in tables]
    tail = []
    if sources.skipped:
        tail = ['## Skipped logs', ''] + [f'- `{_show(p)}`: {why}' for p, why in sorted(sources.skipped.items())]
    return '\n'.join(head) + '\n' + '\n\n'.join(body) + ('\n\n' + '\n'.join(tail) if tail else '') + '\n'


def _dir_note(path):
    return f"{_show(path)}/" + ('' if path and osp.isdir(path) else ' (not found)')


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        prog='basicsr report',
        description="The ECMA paper's Tables 1-10 with our numbers beside the paper's: PSNR/SSIM from BasicSR "
                    "test logs (or the last validation in training logs), GFLOPs/params/latency from a "
                    "`basicsr bench` run. Malformed or partial logs are listed and skipped.")
    p.add_argument('--table', type=int, nargs='+', action='extend', metavar='N', help='only these tables (1-10)')
    p.add_argument('--results', default='results', metavar='DIR',
                   help='where `basicsr test` wrote its runs (default: results)')
    p.add_argument('--experiments', default='experiments', metavar='DIR',
                   help='where `basicsr train` wrote its runs (default: experiments)')
    p.add_argument('--bench', nargs='+', action='extend', metavar='DIR',
                   help='`basicsr bench` output folder(s) or results.csv (default: bench_out if it exists)')
    p.add_argument('--out', metavar='FILE', help='write the report to this markdown file')
    return p


def main(argv=None):
    from ecma_basicsr.paper_tables import PaperTableError, load_index, select
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        tables = select(load_index(), args.table)
        bench_dirs = args.bench if args.bench is not None else (['bench_out'] if osp.isdir('bench_out') else [])
        runs = [load_bench(b) for b in bench_dirs]
    except (PaperTableError, ReportError) as err:
        print(f'basicsr report: error: {err}', file=sys.stderr)
        return 2
    sources = Sources(args.results, args.experiments, runs)
    text = render(tables, sources, 'basicsr report ' + ' '.join(shlex.quote(a) for a in argv))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)
        print(f'wrote {args.out}' + (f' ({len(sources.skipped)} log(s) skipped, listed at its end)'
                                     if sources.skipped else ''))
    else:
        print(text, end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
