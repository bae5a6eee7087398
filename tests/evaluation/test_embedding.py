"""Embedding pictures: the 2-D scores, and tools/analysis/embedding.py writing one t-SNE PNG per
checkpoint, the JSON numbers, and UMAP (a stand-in module) or the line saying it was skipped."""
import json
import sys
import types

import numpy as np
import pytest

from mmssl_ext.cli import embedding as embedding_api
from mmssl_ext.evaluation.embedding import (UMAP_MISSING, embedding_scores, knn_accuracy_2d,
                                            plot_embedding, tsne_embedding)
from mmssl_ext.evaluation.plots import PNG_SIGNATURE
from tests.evaluation.test_layer_probe import PIRL_CFG, knn_options

FMNIST_CLASSES_0_2 = ['T-shirt/top', 'Trouser', 'Pullover']


def _valid_png(path):
    import matplotlib.image as mpimg
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_SIGNATURE
    img = mpimg.imread(str(path))
    return img.ndim == 3 and min(img.shape[:2]) > 100


def test_scores_of_separated_and_mixed_points():
    rng = np.random.RandomState(0)
    labels = np.repeat(np.arange(3), 30)
    centres = np.array([[0, 0], [20, 0], [0, 20]])
    separated = centres[labels] + rng.randn(90, 2)
    s = embedding_scores(separated, labels, k=5)
    assert s['silhouette'] > 0.8 and s['knn_top1'] == 100.0
    mixed = embedding_scores(rng.randn(90, 2), labels, k=5)
    assert abs(mixed['silhouette']) < 0.1 and mixed['knn_top1'] < 60.0
    # leave-one-out majority vote, by brute force
    pts, lab = rng.randn(40, 2), rng.randint(0, 3, 40)
    correct = 0
    for i in range(40):
        d = np.linalg.norm(pts - pts[i], axis=1)
        d[i] = np.inf
        votes = np.bincount(lab[np.argsort(d, kind='stable')[:7]], minlength=3)
        correct += votes.argmax() == lab[i]
    assert knn_accuracy_2d(pts, lab, k=7) == pytest.approx(100.0 * correct / 40)
    # one class: no silhouette, but no crash
    assert embedding_scores(separated[:30], labels[:30], k=5)['silhouette'] is None


def test_tsne_is_seeded(tmp_path):
    rng = np.random.RandomState(0)
    feats = rng.randn(40, 16).astype(np.float32)
    a, b = tsne_embedding(feats, seed=0), tsne_embedding(feats, seed=0)
    assert a.shape == (40, 2)
    np.testing.assert_array_equal(a, b)
    path = plot_embedding(a, rng.randint(0, 3, 40), FMNIST_CLASSES_0_2, str(tmp_path / 'x.png'))
    assert _valid_png(path)


def test_embedding_tool_without_umap(tiny_tree, tiny_pirl_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'umap', None)  # `import umap` raises ImportError
    work = tmp_path / 'emb'
    report = embedding_api.main([
        PIRL_CFG, f'pirl={tiny_pirl_ckpt}', 'random', '--num-points', '9', '--work-dir',
        str(work), '--cfg-options', *knn_options(tiny_tree)])
    out = capsys.readouterr().out
    assert out.count(UMAP_MISSING) == 1
    assert 'umap-learn is not installed' in UMAP_MISSING
    assert report['num_points'] == 9 and report['umap'] == UMAP_MISSING
    assert report['classes'][:3] == FMNIST_CLASSES_0_2  # the legend's names, from metainfo
    for name in ('pirl', 'random'):
        assert _valid_png(work / f'tsne_{name}.png')
        assert not (work / f'umap_{name}.png').exists()
        scores = report['results'][name]
        assert -1.0 <= scores['tsne']['silhouette'] <= 1.0
        assert 0.0 <= scores['tsne']['knn_top1'] <= 100.0
        assert scores['umap'] is None
    saved = json.loads((work / 'embedding.json').read_text())
    assert saved['results'] == report['results']
    assert '| pirl | tsne |' in out and str(work / 'tsne_random.png') in out


class _FakeUMAP:
    """Stands in for umap.UMAP: the first two principal components."""

    def __init__(self, n_components=2, random_state=None, **kwargs):
        self.n_components = n_components

    def fit_transform(self, x):
        x = np.asarray(x) - np.asarray(x).mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        return x @ vt[:self.n_components].T


def test_embedding_tool_with_umap(tiny_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'umap', types.SimpleNamespace(UMAP=_FakeUMAP))
    report = embedding_api.main([
        PIRL_CFG, 'random', '--num-points', '6', '--work-dir', str(tmp_path),
        '--cfg-options', *knn_options(tiny_tree)])
    assert UMAP_MISSING not in capsys.readouterr().out
    assert report['umap'] == 'done'
    assert _valid_png(tmp_path / 'tsne_random.png') and _valid_png(tmp_path / 'umap_random.png')
    assert set(report['results']['random']) == {'tsne', 'umap'}
    # --no-umap: t-SNE only, no message
    report = embedding_api.main([
        PIRL_CFG, 'random', '--num-points', '6', '--no-umap', '--work-dir',
        str(tmp_path / 'no'), '--cfg-options', *knn_options(tiny_tree)])
    assert report['results']['random']['umap'] is None
    assert not (tmp_path / 'no' / 'umap_random.png').exists()
