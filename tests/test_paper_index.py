"""The index of the paper's tables (``ecma_basicsr/paper_tables.yaml``): every row of Tables 1-10, the
numbers as printed, and for the rows we run, option files and bench networks that exist and fit."""
import glob
import os.path as osp
import re

import pytest
import yaml

from ecma_basicsr import paper_tables as pt

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Rows per table, counted in papers/ECMA_eccv2024.txt (Table 7's ECMA-S row and Table 10's columns included)
ROWS = {1: 4, 2: 17, 3: 13, 4: 10, 5: 11, 6: 6, 7: 9, 8: 3, 9: 10, 10: 6}
TABLES = pt.load_index()


def by_number(n):
    return next(t for t in TABLES if t.table == n)


def test_every_row_of_every_table():
    assert [t.table for t in TABLES] == list(range(1, 11))
    assert {t.table: len(t.paper_rows) for t in TABLES} == ROWS
    assert sum(ROWS.values()) == 89


def test_first_and_last_rows_in_the_paper_order():
    firsts = {t.table: (t.paper_rows[0].method, t.paper_rows[-1].method) for t in TABLES}
    assert firsts == {1: ('ECMA-T', 'ECMA-SR'), 2: ('DeblurGAN-v2', 'ECMA-B'), 3: ('DeblurGAN-v2', 'ECMA-B'),
                      4: ('DeblurGANv2', 'ECMA-B'), 5: ('EDSR-baseline', 'ECMA-SR'), 6: ('MPRNet', 'ECMA-S'),
                      7: ('MPRNet', 'ECMA-S'), 8: ('Local Adaptive Conv (Proposed)', 'Direct concatenation'),
                      9: ('cascaded large to small LAM (Proposed)', 'large conv in spatial domain'),
                      10: ('Uformer-B', 'ECMA-B')}


def test_printed_numbers_are_in_the_paper(shared):
    """Each number of the index occurs in our copy of the paper (catches typos when editing the YAML)."""
    with open(shared('papers', 'ECMA_eccv2024.txt'), encoding='utf-8') as f:
        paper = f.read()
    numbers = set(re.findall(r'\d+(?:\.\d+)?', paper))
    for table in TABLES:
        for row in table.paper_rows:
            for key, value in row.paper.items():
                if value != pt.MISSING and re.fullmatch(r'\d+(\.\d+)?', value):
                    assert value in numbers, f'Table {table.table}, {row.method}, {key}: {value} not in the paper'


def test_rows_match_their_line_in_the_paper(shared):
    """Tables 2-7 and 9: the row's numbers, in order, are those of the paper's line for that method."""
    with open(shared('papers', 'ECMA_eccv2024.txt'), encoding='utf-8') as f:
        lines = f.read().splitlines()

    def numbers(line):  # drop citations, the "(9.7x fewer)" notes and markup first
        line = re.sub(r'\[\d+\]|\([^)]*\)|</?mark>', ' ', line)
        return re.findall(r'\d+(?:\.\d+)?', line)

    checked = 0
    for table in TABLES:
        if table.table in (1, 8, 10):  # printed as arrays / two rows per line; the value check above covers them
            continue
        for row in table.paper_rows:
            if row.note:  # garbled in our copy (the note says how the numbers were read)
                continue
            want = [v for v in row.paper.values() if v != pt.MISSING]
            # our copy prints e.g. "DeepRFT + [34]", "MIMO-Unet+[10]", "ECMA-T (Ours)": compare without spaces
            head = re.compile(re.escape(row.method.replace(' ', '')) + r'(\([Oo]urs\))?(?=[\t\[])')
            rests = [ln.replace(' ', '')[m.end():] for ln in lines if (m := head.match(ln.replace(' ', '')))]
            assert any(numbers(rest)[:len(want)] == want for rest in rests), (table.table, row.method)
            checked += 1
    assert checked == 17 + 13 + 10 + 11 + 6 + 9 + 10 - 2  # minus Table 7's two noted rows


def test_ecma_rows_repeat_table1_costs():
    """ECMA's GFLOPs in Tables 2-7 and 10 are Table 1's; the index must not disagree with itself."""
    cost = {r.method: r.paper['gflops'] for r in by_number(1).rows}
    for table in TABLES:
        for row in table.paper_rows:
            key = 'gflops' if 'gflops' in row.paper else 'flops' if 'flops' in row.paper else None
            if row.method in cost and key and table.table != 1:
                assert row.paper[key] == cost[row.method], (table.table, row.method)


def runnable_rows():
    return [(t, r) for t in TABLES for r in t.rows if r.implemented]


def test_not_implemented_rows_are_marked_and_the_rest_run():
    for table in TABLES:
        for row in table.rows:
            assert row.runnable == row.implemented, row.label
            if row.extra:
                assert set(row.paper.values()) == {pt.MISSING}, f'{row.label}: extra rows have no paper numbers'
    assert sum(r.runnable for t in TABLES for r in t.paper_rows) == 38  # 4+4+3+1+4+3+3+3+10+3


@pytest.mark.parametrize('table,row', runnable_rows(), ids=[f'T{t.table}-{r.label}' for t, r in runnable_rows()])
def test_runnable_rows_point_at_files_that_fit(table, row):
    log_columns = [c for c in table.columns if c.source == 'log']
    if log_columns:
        assert row.test, f'{row.label}: log columns need test option files'
    tested = {}
    for path in row.test:
        opt = pt.option_file(path)
        assert opt is not None, f'{path} does not exist'
        assert path.endswith('_test.yml') and opt.get('name')
        for d in opt['datasets'].values():
            tested[d['name']] = set(opt['val']['metrics'])
    for column in log_columns:
        name = row.dataset_name(column.set)
        assert name in tested, f"{row.label}: no test file tests '{name}' (they test {sorted(tested)})"
        assert column.metric in tested[name]
    for path in row.train:
        opt = pt.option_file(path)
        assert opt is not None and 'train' in opt['datasets'], f'{path} is not a train option file'
    if row.bench:
        from ecma_basicsr.bench.networks import parse_spec
        assert parse_spec(row.bench).label == row.bench_label
    if any(c.source == 'bench' for c in table.columns):
        assert row.bench, f'{row.label}: the table has bench columns'


def test_every_table_test_file_is_a_row():
    """Each test option file in a table folder belongs to some row (paper or extra) of the index."""
    indexed = {p for t in TABLES for r in t.rows for p in r.test}
    files = glob.glob(osp.join(REPO, 'options', 'table*', '*_test.yml'))
    assert files
    missing = [osp.relpath(f, REPO) for f in sorted(files) if osp.relpath(f, REPO) not in indexed]
    assert missing == []


def test_option_headers_agree_with_the_index():
    """ECMA's generated option files print the paper's PSNR / SSIM in their header: the same as the index."""
    checked = 0
    for table in TABLES:
        for row in table.paper_rows:
            for path in row.test:
                with open(pt.resolve_option(path)) as f:
                    header = f.read().split('\nname:', 1)[0]
                m = re.search(r'Paper \(PSNR / SSIM\): ([\d.]+) / ([\d.]+)', header)
                if m and table.table in (2, 3, 6, 7):
                    assert m.groups() == (row.paper['psnr'], row.paper['ssim']), path
                    checked += 1
                if m and table.table == 4:
                    j = path.endswith('RealBlur-J_test.yml')
                    s = 'j' if j else 'r'
                    want = (row.paper[f'{s}_psnr'], row.paper[f'{s}_ssim'])
                    assert m.groups() == want, path
                    checked += 1
    assert checked == 10  # ECMA rows of Tables 2, 3, 4 (J, R), 6, 7


def test_schema_errors_name_the_problem(tmp_path):
    good = yaml.safe_load(open(pt.INDEX_FILE))

    def broken(edit):
        data = yaml.safe_load(yaml.safe_dump(good))
        edit(data)
        path = tmp_path / 'index.yaml'
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(pt.PaperTableError) as err:
            pt.load_index(str(path))
        return str(err.value)

    assert 'paper must give every column' in broken(lambda d: d['tables'][1]['rows'][0]['paper'].pop('ssim'))
    assert "must be a quoted string as printed, got 32.45" in \
        broken(lambda d: d['tables'][1]['rows'][5]['paper'].update(psnr=32.45))
    assert 'mark it implemented: false' in broken(lambda d: d['tables'][1]['rows'][0].pop('implemented'))
    assert 'implemented: false rows have no train' in \
        broken(lambda d: d['tables'][1]['rows'][0].update(test='options/x_test.yml'))
    assert 'table numbers are 1-10' in broken(lambda d: d['tables'][2].update(table=2))
    assert "unknown key(s) tset" in broken(lambda d: d['tables'][1]['rows'][11].update(tset='x'))
    with pytest.raises(pt.PaperTableError, match="--table 0: the paper's tables are numbered 1-10"):
        pt.select(TABLES, [0])


def test_markdown_of_the_index(capsys):
    assert pt.main(['--table', '8']) == 0
    out = capsys.readouterr().out
    assert out.startswith('### Table 8: Ablation of the local adaptive module (LAM)')
    assert '| Ele-wise Addition | 32.36 | 0.955 | train: `table8_9_ablation/ECMA-T_table8_addition_train.yml`; ' \
           'test: `table8_9_ablation/ECMA-T_table8_addition_test.yml` |' in out
    assert '3 rows in the paper, 3 runnable here' in out
    md = pt.index_markdown(TABLES)
    assert md.count('### Table ') == 10 and md.count('not implemented here') == 89 - 38
