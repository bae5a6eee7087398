"""Semi-supervised label subsets: balanced, reproducible, nested, valid annotation files."""
import collections

import pytest

from mmssl_ext.datasets.subset import (balanced_subset, main, read_annotation, subset_name,
                                       write_subsets)


def _ann(tmp_path, per_class=(200, 150, 120), name='train.txt'):
    lines = []
    i = 0
    for label, n in enumerate(per_class):
        for _ in range(n):
            lines.append(f'class{label}/{i:05d}.png {label}\n')
            i += 1
    # interleave classes so order preservation is observable
    lines = lines[::2] + lines[1::2]
    path = tmp_path / name
    path.write_text(''.join(lines))
    return str(path), lines


def test_balanced_and_in_source_order(tmp_path):
    path, lines = _ann(tmp_path)
    items = read_annotation(path)
    idx = balanced_subset(items, 10)
    counts = collections.Counter(items[i][1] for i in idx)
    per_class = round(0.10 * len(items) / 3)  # 470 images, 3 classes: 16 each
    assert counts == {0: per_class, 1: per_class, 2: per_class}
    assert idx == sorted(idx) and len(set(idx)) == len(idx)


def test_reproducible_seeded_and_nested(tmp_path):
    path, _ = _ann(tmp_path)
    items = read_annotation(path)
    assert balanced_subset(items, 10, seed=0) == balanced_subset(items, 10, seed=0)
    assert balanced_subset(items, 10, seed=0) != balanced_subset(items, 10, seed=1)
    assert set(balanced_subset(items, 1)) <= set(balanced_subset(items, 10))


def test_written_files(tmp_path, capsys):
    path, lines = _ann(tmp_path)
    written = main([path, '--percent', '1', '10', '--seed', '3'])
    assert written[1].endswith('train_1pct.txt') and written[10].endswith('train_10pct.txt')
    sub = open(written[10]).read().splitlines(keepends=True)
    assert set(sub) <= set(lines)  # the very lines of the source, unchanged
    assert [line for line in lines if line in set(sub)] == sub  # in source order
    again = write_subsets(path, (10, ), seed=3, out_dir=str(tmp_path / 'other'))
    assert open(again[10]).read() == ''.join(sub)
    assert len(sub) == 3 * round(0.10 * len(lines) / 3)
    assert f'10% subset: {len(sub)} images' in capsys.readouterr().out
    assert subset_name('meta/train.txt', 0.5) == 'train_0.5pct.txt'


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        read_annotation(str(tmp_path / 'nope.txt'))
    bad = tmp_path / 'bad.txt'
    bad.write_text('a.png 0\nb.png x\n')
    with pytest.raises(ValueError, match=r'bad.txt:2: label .x. is not an integer'):
        read_annotation(str(bad))
    path, _ = _ann(tmp_path, per_class=(100, 3))
    with pytest.raises(ValueError, match=r'needs 10 images per class.*\{1: 3\}'):
        balanced_subset(read_annotation(path), 19.5)
    with pytest.raises(ValueError, match='percent must be in'):
        balanced_subset(read_annotation(path), 0)
