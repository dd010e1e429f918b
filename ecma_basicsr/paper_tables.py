"""The ECMA paper's Tables 1-10, row by row: the index in ``paper_tables.yaml``, its checks and its markdown.

Every row of the paper's ten tables (configurations, GoPro, HIDE, RealBlur, SR x4, REDS, SIDD, the two
ablations and the inference times, Sec. 3.4 and 4.1-4.6), including the other methods' rows, with the
numbers exactly as printed, and for the rows this package can run: their train / test option files and
their ``basicsr bench`` network. The YAML file is the one place these published numbers live; ``basicsr
report`` (:mod:`ecma_basicsr.report`) sets our results beside them and the README shows how to render them:

    python -m ecma_basicsr.paper_tables              # the whole index as markdown
    python -m ecma_basicsr.paper_tables --table 4    # one table
"""
import argparse
import os
import os.path as osp
import sys
from dataclasses import dataclass, field

INDEX_FILE = osp.join(osp.dirname(osp.abspath(__file__)), 'paper_tables.yaml')
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TABLE_IDS = tuple(range(1, 11))
MISSING = '-'  # what the index writes where the paper printed no number


class PaperTableError(ValueError):
    """The index file does not follow its schema (the message names the table, row and key)."""


@dataclass
class Column:
    """One printed column and, when we can measure it, where our value comes from."""
    key: str
    label: str
    unit: str = None
    set: str = None  # canonical dataset name of a test log (with ``metric``)
    metric: str = None
    bench: tuple = ()  # results.csv column templates, first non-empty wins
    bench_scale: float = 1.0

    @property
    def source(self):
        return 'log' if self.set else 'bench' if self.bench else None


@dataclass
class Row:
    """One printed row (or an ``extra`` row shown beside the table)."""
    table: int
    method: str
    paper: dict
    ref: str = None
    config: str = None
    note: str = None
    implemented: bool = True
    extra: bool = False
    train: list = field(default_factory=list)
    test: list = field(default_factory=list)
    bench: str = None
    bench_size: str = None
    set_names: dict = field(default_factory=dict)

    @property
    def label(self):
        text = f'{self.method} {self.ref}' if self.ref else self.method
        return f'{text}, {self.config}' if self.config else text

    @property
    def runnable(self):
        return bool(self.test or self.bench)

    @property
    def bench_label(self):
        """The results.csv label of the bench spec: ``LABEL=`` if given, else the spec (a preset name)."""
        if not self.bench:
            return None
        head = self.bench.split(':', 1)[0]
        return head.split('=', 1)[0].strip() if '=' in head else self.bench.split('@', 1)[0].strip()

    def dataset_name(self, canonical):
        return self.set_names.get(canonical, canonical)


@dataclass
class Table:
    table: int
    title: str
    columns: list
    rows: list
    where: str = ''
    bench_size: str = None

    @property
    def paper_rows(self):
        return [r for r in self.rows if not r.extra]

    def bench_columns(self, column, row):
        size = row.bench_size or self.bench_size
        return [c.replace('{size}', size or '') for c in column.bench]


def _yaml_load(f):
    import yaml
    return yaml.load(f, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))  # the C loader is 10x faster


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _column(d, where):
    unknown = set(d) - {'key', 'label', 'unit', 'set', 'metric', 'bench', 'bench_scale'}
    if unknown or 'key' not in d or 'label' not in d:
        raise PaperTableError(f'{where}: a column needs key and label (and may have unit, set + metric, bench, '
                              f'bench_scale); got {sorted(d)}')
    if bool(d.get('set')) != bool(d.get('metric')):
        raise PaperTableError(f"{where}, column '{d['key']}': set and metric go together")
    if d.get('set') and d.get('bench'):
        raise PaperTableError(f"{where}, column '{d['key']}': a value comes from a log (set) or a bench run, not both")
    return Column(key=d['key'], label=d['label'], unit=d.get('unit'), set=d.get('set'), metric=d.get('metric'),
                  bench=tuple(_as_list(d.get('bench'))), bench_scale=float(d.get('bench_scale', 1.0)))


_ROW_KEYS = {'method', 'ref', 'config', 'paper', 'note', 'implemented', 'extra', 'train', 'test', 'bench',
             'bench_size', 'set_names'}


def _row(d, table, columns, where):
    unknown = set(d) - _ROW_KEYS
    if unknown:
        raise PaperTableError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"valid: {', '.join(sorted(_ROW_KEYS))}")
    if not d.get('method'):
        raise PaperTableError(f'{where}: a row needs a method')
    where = f"{where} ({d['method']})"
    paper = d.get('paper') or {}
    keys = [c.key for c in columns]
    if sorted(paper) != sorted(keys):
        raise PaperTableError(f"{where}: paper must give every column ({', '.join(keys)}; '{MISSING}' where the "
                              f"table prints none), got {', '.join(paper)}")
    for key, value in paper.items():
        if not isinstance(value, str):
            raise PaperTableError(f"{where}: paper value of '{key}' must be a quoted string as printed, got {value!r}")
    row = Row(table=table, method=str(d['method']), paper=dict(paper), ref=d.get('ref'), config=d.get('config'),
              note=d.get('note'), implemented=bool(d.get('implemented', True)), extra=bool(d.get('extra', False)),
              train=_as_list(d.get('train')), test=_as_list(d.get('test')), bench=d.get('bench'),
              bench_size=d.get('bench_size'), set_names=dict(d.get('set_names') or {}))
    if not row.implemented and (row.train or row.test or row.bench):
        raise PaperTableError(f'{where}: implemented: false rows have no train / test / bench')
    if row.implemented and not row.runnable:
        raise PaperTableError(f'{where}: give test option file(s) or a bench spec, or mark it implemented: false')
    sets = {c.set for c in columns if c.set}
    if set(row.set_names) - sets:
        raise PaperTableError(f"{where}: set_names names {sorted(set(row.set_names) - sets)}, which no column uses "
                              f"(columns use {sorted(sets)})")
    return row


def load_index(path=INDEX_FILE):
    """All tables of the index, in order.

    Raises:
        PaperTableError: the file breaks the schema described at its top.
    """
    with open(path, encoding='utf-8') as f:
        data = _yaml_load(f) or {}
    tables, seen = [], set()
    for i, t in enumerate(data.get('tables') or []):
        where = f"{osp.basename(path)}: table {t.get('table', f'#{i + 1}')}"
        num = t.get('table')
        if num not in TABLE_IDS or num in seen:
            raise PaperTableError(f'{where}: table numbers are 1-10, each once')
        seen.add(num)
        columns = [_column(c, where) for c in t.get('columns') or []]
        if len({c.key for c in columns}) != len(columns):
            raise PaperTableError(f'{where}: column keys repeat')
        rows = [_row(r, num, columns, f'{where}, row {j + 1}') for j, r in enumerate(t.get('rows') or [])]
        tables.append(Table(table=num, title=t.get('title', ''), columns=columns, rows=rows,
                            where=t.get('where', ''), bench_size=t.get('bench_size')))
    return tables


def select(tables, numbers=None):
    """The tables numbered ``numbers`` (all when empty), with a clear error for a number not in 1-10."""
    if not numbers:
        return tables
    bad = [n for n in numbers if n not in TABLE_IDS]
    if bad:
        raise PaperTableError(f"--table {bad[0]}: the paper's tables are numbered 1-10")
    return [t for t in tables if t.table in numbers]


def resolve_option(path):
    """An option file path of the index (relative to the repository) as an existing path, or None.

    Looked up from the current directory first (a checkout you run in), then beside this package.
    """
    for base in (os.getcwd(), REPO_ROOT):
        candidate = path if osp.isabs(path) else osp.join(base, path)
        if osp.isfile(candidate):
            return candidate
    return None


def option_file(path):
    """The parsed option file of an index path (None if it cannot be found)."""
    found = resolve_option(path)
    if found is None:
        return None
    with open(found, encoding='utf-8') as f:
        return _yaml_load(f)


# ------------------------------------------------------------------------------------------------
# markdown
# ------------------------------------------------------------------------------------------------
def _cell(text):
    return str(text).replace('|', '\\|')


def _runs(row):
    if not row.implemented:
        return 'not implemented here'
    parts = []
    for kind in ('train', 'test'):
        files = getattr(row, kind)
        if files:
            parts.append(f"{kind}: {', '.join('`' + f.replace('options/', '', 1) + '`' for f in files)}")
    if row.bench:
        parts.append(f'bench: `{row.bench}`')
    return '; '.join(parts)


def table_markdown(table):
    """One table of the index as markdown: the paper's numbers and how to run each row."""
    head = ['Method'] + [f'{c.label} ({c.unit})' if c.unit else c.label for c in table.columns] + ['Runs']
    lines = [f'### Table {table.table}: {table.title}', '']
    if table.where:
        lines += [table.where, '']
    lines += ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    notes = []
    for row in table.rows:
        name = ('(extra) ' if row.extra else '') + row.label
        if row.note:
            notes.append(f'{row.label}: {row.note}.')
            name += f' [{len(notes)}]'
        cells = [name] + [row.paper[c.key] for c in table.columns] + [_runs(row)]
        lines.append('| ' + ' | '.join(_cell(c) for c in cells) + ' |')
    if notes:
        lines += [''] + [f'[{i}] {n}' for i, n in enumerate(notes, 1)]
    extras = sum(r.extra for r in table.rows)
    lines += ['', f'{len(table.paper_rows)} rows in the paper, {sum(r.runnable for r in table.paper_rows)} runnable '
                  f'here' + (f'; {extras} extra row(s) (not in the paper, no published number here)' if extras else '')]
    return '\n'.join(lines)


def index_markdown(tables):
    return '\n\n'.join(table_markdown(t) for t in tables) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m ecma_basicsr.paper_tables',
                                description="The ECMA paper's Tables 1-10 (as printed) and how to run each row.")
    p.add_argument('--table', type=int, nargs='+', action='extend', metavar='N', help='only these tables (1-10)')
    p.add_argument('--out', help='write the markdown to this file instead of printing it')
    args = p.parse_args(argv)
    try:
        text = index_markdown(select(load_index(), args.table))
    except PaperTableError as err:
        print(f'paper_tables: error: {err}', file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)
        print(f'wrote {args.out}')
    else:
        print(text, end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
