"""SoftLabelDataset: gt_score reaches the DataSample and the head's loss; named errors."""
import os.path as osp

import numpy as np
import pytest
import torch

from mmssl_ext.datasets import SoftLabelDataset
from mmssl_ext.registry import DATASETS

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(16, 16)),
            dict(type='PackInputs')]


def _write(tmp_path, tree, n=None, num_classes=4, seed=0, dtype=np.float32):
    """A soft-target pair for the first n images of the tiny tree's train list."""
    lines = open(osp.join(tree, 'meta', 'train.txt')).read().split('\n')
    lines = [x for x in lines if x][:n]
    rng = np.random.RandomState(seed)
    scores = rng.dirichlet(np.ones(num_classes), size=len(lines)).astype(dtype)
    ann = tmp_path / 'train_soft.txt'
    ann.write_text(''.join(f'{x.split()[0]} {int(s.argmax())}\n'
                           for x, s in zip(lines, scores)))
    npy = tmp_path / 'soft_targets.npy'
    np.save(npy, scores)
    return str(ann), str(npy), scores


def _build(tree, ann, npy, **kw):
    cfg = dict(type='SoftLabelDataset', data_root=tree, data_prefix='train', ann_file=ann,
               soft_targets=npy, pipeline=PIPELINE)
    cfg.update(kw)
    return DATASETS.build(cfg)


def test_round_trip_to_data_sample_and_preprocessor(tiny_tree, tmp_path):
    from mmpretrain.models import ClsDataPreprocessor
    from mmengine.dataset import default_collate
    ann, npy, scores = _write(tmp_path, tiny_tree, n=10)
    ds = _build(tiny_tree, ann, npy)
    assert isinstance(ds, SoftLabelDataset) and len(ds) == 10 and ds.num_soft_classes == 4
    rows = [line.split() for line in open(ann)]
    for i in (0, 3, 9):
        info = ds.get_data_info(i)
        assert info['img_path'] == osp.join(tiny_tree, 'train', rows[i][0])
        np.testing.assert_allclose(info['gt_score'], scores[i], rtol=1e-6)
        sample = ds[i]['data_samples']
        torch.testing.assert_close(sample.gt_score, torch.from_numpy(scores[i]))
        assert int(sample.gt_label) == int(rows[i][1]) and sample.num_classes == 4
    # the classification data preprocessor keeps them, as ClsHead._get_loss reads them
    batch = default_collate([ds[i] for i in range(4)])
    out = ClsDataPreprocessor(num_classes=4)(batch, True)
    got = torch.stack([s.gt_score for s in out['data_samples']])
    torch.testing.assert_close(got, torch.from_numpy(scores[:4]))
    # relative paths are joined with data_root, like ann_file; a subset keeps rows aligned
    rel = _build(str(tmp_path), 'train_soft.txt', 'soft_targets.npy',
                 data_prefix=osp.join(tiny_tree, 'train'), indices=[2, 5], mmap=True)
    np.testing.assert_allclose(rel.get_data_info(1)['gt_score'], scores[5], rtol=1e-6)


def test_float16_rows_are_renormalised(tiny_tree, tmp_path):
    ann, npy, scores = _write(tmp_path, tiny_tree, n=6, num_classes=7, dtype=np.float16)
    ds = _build(tiny_tree, ann, npy)
    row = ds.get_data_info(2)['gt_score']
    assert row.dtype == np.float32 and row.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(row, scores[2].astype(np.float32), atol=2e-3)


def test_errors_name_files_and_rows(tiny_tree, tmp_path):
    ann, npy, scores = _write(tmp_path, tiny_tree, n=10)
    np.save(npy, scores[:7])
    with pytest.raises(ValueError, match=rf'soft targets {npy} have 7 rows .* annotation file '
                       rf'{ann} lists 10 images'):
        _build(tiny_tree, ann, npy)
    bad = scores.copy()
    bad[4, 1] = np.nan
    np.save(npy, bad)
    with pytest.raises(ValueError, match=rf'{npy}: row 4 contains NaN'):
        _build(tiny_tree, ann, npy)
    bad = scores.copy()
    bad[6] *= 2
    np.save(npy, bad)
    with pytest.raises(ValueError, match=rf'{npy}: row 6 sums to 2, not 1'):
        _build(tiny_tree, ann, npy)
    bad = scores.copy()
    bad[1] = [1.5, -0.5, 0, 0]
    np.save(npy, bad)
    with pytest.raises(ValueError, match='row 1 has negative entries'):
        _build(tiny_tree, ann, npy)
    with pytest.raises(FileNotFoundError, match='nope.npy do not exist'):
        _build(tiny_tree, ann, str(tmp_path / 'nope.npy'))
    with pytest.raises(ValueError, match='needs ann_file'):
        _build(tiny_tree, '', npy)
    np.save(npy, scores[:, :2] / scores[:, :2].sum(1, keepdims=True))  # 2 classes, labels to 3
    with pytest.raises(ValueError, match=r'line \d+: label [23] is outside the 2 classes'):
        _build(tiny_tree, ann, npy)
