"""VOC07-style SVM benchmark: mAP against an independent scikit-learn pipeline written here, the
VOC AP against a loop, the low-shot sampler (counts, seeds, train rows only), VOC targets from
mmpretrain's dataset, bad input, and tools/svm_eval.py end to end on the tiny tree."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from sklearn.model_selection import cross_val_score
from sklearn.svm import LinearSVC

from mmssl_ext.cli import svm_eval as svm_cli
from mmssl_ext.evaluation import svm
from mmssl_ext.evaluation.layer_probe import PooledStages
from mmssl_ext.evaluation.plots import is_png
from tests.helpers import REPO, tiny_moco_options

PIRL_CFG = f'{REPO}/configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py'
COSTS = (0.01, 1.0, 100.0)


def loop_ap(labels, scores):
    """VOC all-point AP by explicit loops: precision at every rank, made monotone from the
    right, summed over the recall steps."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    npos = sum(1 for v in labels if v > 0)
    tp, prec, rec = 0, [], []
    for rank, i in enumerate(order, 1):
        tp += labels[i] > 0
        prec.append(tp / rank)
        rec.append(tp / npos)
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    ap, last = 0.0, 0.0
    for p, r in zip(prec, rec):
        ap += (r - last) * p
        last = r
    return ap


def blobs(n, num_classes=3, dim=12, seed=0, noise=1.5):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(size=(num_classes, dim))
    y = np.arange(n) % num_classes
    return centres[y] + rng.normal(scale=noise, size=(n, dim)), y


def independent_map(train_x, train_t, test_x, test_t, costs, folds=3):
    """The protocol with scikit-learn directly: LinearSVC per class and cost, 3-fold CV AP,
    the best cost refitted, test AP (loop) over the samples not marked -1."""
    def norm(x):
        return x / (np.sqrt((x ** 2).sum(axis=1, keepdims=True)) + 1e-5)
    train_x, test_x = norm(train_x), norm(test_x)
    aps, chosen = [], []
    for c in range(train_t.shape[1]):
        y = np.where(train_t[:, c] == 1, 1, -1)

        def make(cost):
            return LinearSVC(C=cost, class_weight={1: 2, -1: 1}, penalty='l2',
                             loss='squared_hinge', dual=True, tol=1e-4, max_iter=2000)
        cv = [cross_val_score(make(cost), train_x, y, cv=folds,
                              scoring='average_precision').mean() for cost in costs]
        best = costs[int(np.argmax(cv))]
        chosen.append(best)
        keep = test_t[:, c] != -1
        scores = make(best).fit(train_x, y).decision_function(test_x[keep])
        aps.append(loop_ap(list(test_t[keep, c]), list(scores)))
    return 100 * float(np.mean(aps)), chosen


def test_voc_ap_matches_loop_and_bounds_sklearn():
    from sklearn.metrics import average_precision_score
    rng = np.random.default_rng(1)
    for _ in range(20):
        labels = rng.integers(0, 2, 40)
        labels[0] = 1
        scores = rng.normal(size=40) + labels
        ap = svm.voc_ap(labels, scores)
        assert ap == pytest.approx(loop_ap(list(labels), list(scores)), abs=1e-12)
        assert ap >= average_precision_score(labels, scores) - 1e-12  # envelope >= raw curve
    assert svm.voc_ap([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0


def test_svm_map_matches_independent_sklearn():
    train_x, train_y = blobs(90, seed=0)
    test_x, test_y = blobs(60, seed=1)
    train_t = svm.targets_from_labels(train_y)
    test_t = svm.targets_from_labels(test_y)
    test_t[::7, 1] = -1  # 'difficult': left out of class 1's test AP
    ours = svm.svm_map(train_x, train_t, test_x, test_t, costs=COSTS)
    ref_map, ref_costs = independent_map(train_x, train_t, test_x, test_t, COSTS)
    assert ours['map'] == pytest.approx(ref_map, abs=1e-9)
    assert ours['chosen_cost'] == ref_costs
    assert len(ours['ap']) == 3 and np.array(ours['cv_ap']).shape == (3, len(COSTS))
    assert 0 < ours['map'] <= 100


def test_low_shot_sampler_counts_seeds_and_train_rows_only(monkeypatch):
    train_x, train_y = blobs(120, num_classes=4, seed=0)
    train_t = svm.targets_from_labels(train_y)
    for k in (1, 3):
        s = svm.low_shot_sample(train_t, k, seed=1)
        assert s.shape == train_t.shape
        for c in range(4):
            pos = np.flatnonzero(s[:, c] == 1)
            neg = np.flatnonzero(s[:, c] == 0)
            assert len(pos) == k and len(neg) == 3 * k
            assert (train_t[pos, c] == 1).all() and (train_t[neg, c] == 0).all()
            assert ((s[:, c] == 1) | (s[:, c] == 0) | (s[:, c] == -1)).all()
        np.testing.assert_array_equal(s, svm.low_shot_sample(train_t, k, seed=1))
        assert not np.array_equal(s, svm.low_shot_sample(train_t, k, seed=2))

    # every SVM is fitted on train rows drawn by the sampler, never on a test row
    test_x, test_y = blobs(40, num_classes=4, seed=5)
    train_rows = {tuple(np.round(r, 9)) for r in svm.normalize_features(train_x)}
    test_rows = {tuple(np.round(r, 9)) for r in svm.normalize_features(test_x)}
    seen = []
    orig_fit = LinearSVC.fit

    def recording_fit(self, x, y, *a, **kw):
        seen.extend(tuple(np.round(r, 9)) for r in x)
        return orig_fit(self, x, y, *a, **kw)

    monkeypatch.setattr(LinearSVC, 'fit', recording_fit)
    res = svm.low_shot_svm(train_x, train_t, test_x, svm.targets_from_labels(test_y),
                           k_values=(2, ), samples=(1, 2), costs=(0.1, 1.0))
    assert seen and set(seen) <= train_rows and not set(seen) & test_rows
    assert len(seen) == 2 * 4 * 2 * (2 * 4)  # samples x classes x costs x (k + 3k) rows

    # the reported number: the best mean over samples, per cost as the independent pipeline
    table = np.array(res['table'][2])
    assert table.shape == (2, 2)
    best = int(np.argmax(table.mean(axis=0)))
    assert res['k'][2]['mean'] == pytest.approx(table[:, best].mean())
    assert res['k'][2]['cost'] == (0.1, 1.0)[best]
    monkeypatch.setattr(LinearSVC, 'fit', orig_fit)
    s = svm.low_shot_sample(train_t, 2, seed=1)
    xn, tn = svm.normalize_features(train_x), svm.normalize_features(test_x)
    aps = []
    for c in range(4):
        keep = s[:, c] != -1
        clf = LinearSVC(C=0.1, class_weight={1: 2, -1: 1}, tol=1e-4, max_iter=2000).fit(
            xn[keep], np.where(s[keep, c] == 1, 1, -1))
        aps.append(loop_ap(list((test_y == c).astype(int)), list(clf.decision_function(tn))))
    assert table[0, 0] == pytest.approx(100 * np.mean(aps), abs=1e-9)


def test_bad_input_is_named():
    x, y = blobs(30, seed=0)
    t = svm.targets_from_labels(y, num_classes=4)  # class 3 never occurs
    with pytest.raises(ValueError, match=r'class 3 \(coat\) has 0 positive'):
        svm.svm_map(x, t, x, t, costs=(1.0, ), class_names=['a', 'b', 'c', 'coat'])
    t3 = svm.targets_from_labels(y)
    with pytest.raises(ValueError, match=r'low-shot k=20: class 0 has 10 positive training '
                                         r'samples, 20 are needed'):
        svm.low_shot_sample(t3, 20, seed=1)
    test_t = t3.copy()
    test_t[:, 2] = 0
    with pytest.raises(ValueError, match='class 2 has no positive test sample'):
        svm.svm_map(x, t3, x, test_t, costs=(1.0, ))
    with pytest.raises(ValueError, match='N x D features and N x C targets'):
        svm.train_svms(x[:5], t3, costs=(1.0, ))


def test_fixed_pooling_as_vissl_and_bad_ops():
    from mmpretrain.models import ResNet
    bb = ResNet(depth=18, base_channels=8, stem_channels=8)
    bb.eval()  # mmpretrain's ResNet.train returns None
    pooled = PooledStages(bb, ['stem', 'res2'], pool_ops=dict(res2=(4, 2, 0)))
    with torch.no_grad():
        pooled(torch.randn(2, 3, 64, 64))
    # res2: 8 x 16 x 16 -> AvgPool2d(4, 2) -> 7 x 7; stem by the max_dim rule: 8 x 16 x 16
    assert pooled.layout['res2']['dim'] == 8 * 7 * 7 and pooled.layout['stem']['dim'] == 8 * 256
    with pytest.raises(ValueError, match=r"pool_ops\['res2'\] = \(40, 2, 0\) does not fit"):
        with torch.no_grad():
            PooledStages(bb, ['res2'], pool_ops=dict(res2=(40, 2, 0)))(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="pool_ops names stage 'conv9'"):
        PooledStages(bb, pool_ops=dict(conv9=(2, 2, 0)))


def write_tiny_voc(root):
    """Three VOC annotation files: a plain positive, a 'difficult'-only class, a mixed one."""
    os.makedirs(osp.join(root, 'Annotations'))
    os.makedirs(osp.join(root, 'ImageSets', 'Main'))
    objects = {'0001': [('dog', 0), ('cat', 1)], '0002': [('cat', 0), ('cat', 1)],
               '0003': [('person', 0), ('dog', 1), ('dog', 0)]}
    for img_id, objs in objects.items():
        body = ''.join(f'<object><name>{n}</name><difficult>{d}</difficult></object>'
                       for n, d in objs)
        with open(osp.join(root, 'Annotations', f'{img_id}.xml'), 'w') as f:
            f.write(f'<annotation>{body}</annotation>')
    with open(osp.join(root, 'ImageSets', 'Main', 'test.txt'), 'w') as f:
        f.write('\n'.join(objects) + '\n')


def test_voc_targets_from_mmpretrain_dataset(tmp_path):
    from mmpretrain.datasets import VOC
    write_tiny_voc(str(tmp_path))
    ds = VOC(data_root=str(tmp_path), split='test', test_mode=True, pipeline=[])
    t = svm.dataset_targets(ds)
    names = list(ds.metainfo['classes'])
    dog, cat, person = names.index('dog'), names.index('cat'), names.index('person')
    assert t.shape == (3, 20)
    assert (t[0, dog], t[0, cat], t[0, person]) == (1, -1, 0)
    assert (t[1, dog], t[1, cat]) == (0, 1)
    assert (t[2, dog], t[2, person], t[2, cat]) == (1, 1, 0)
    assert (t == 1).sum() == 4 and (t == -1).sum() == 1


def test_svm_eval_cli_end_to_end(tiny_tree, tmp_path):
    from tests.engine.test_tensorboard import events, tensorboard_config
    opts = [o for o in tiny_moco_options(tiny_tree, '') if o.startswith('knn_eval.')]
    opts += [f'knn_eval.{s}_dataloader.dataset.metainfo.classes=(class0,class1,class2)'
             for s in ('train', 'val')]  # the tiny tree's 3 classes, not Fashion-MNIST's 10
    work = str(tmp_path / 'svm')
    report = svm_cli.main([
        tensorboard_config(tmp_path, PIRL_CFG), 'random', '--work-dir', work,
        '--stages', 'res4', 'res5', '--costs', '0.1', '1.0', '--low-shot', '--k-values', '1',
        '2', '--samples', '1', '2', '--cfg-options', *opts])
    with open(osp.join(work, 'svm_eval.json')) as f:
        saved = json.load(f)
    assert saved['results'] == report['results']
    assert set(saved['results']['random']['svm']) == {'res4', 'res5'}
    assert saved['num_train'] == 24 and saved['num_test'] == 12
    assert saved['classes'] == ['class0', 'class1', 'class2']
    assert saved['layout']['res4']['dim'] == 128 * 2 * 2  # 32 px: res4 is 2 x 2, all kept
    for stage in ('res4', 'res5'):
        assert 0 < saved['results']['random']['svm'][stage] <= 100
        assert set(saved['low_shot']['random'][stage]['k']) == {'1', '2'}
        assert np.array(saved['low_shot']['random'][stage]['table']['2']).shape == (2, 2)
    assert is_png(report['files']['png']) and is_png(report['files']['low_shot_png'])
    assert sorted(events(work).Tags()['images']) == ['svm_eval', 'svm_low_shot']
