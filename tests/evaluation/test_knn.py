"""Weighted kNN against an independent brute-force reference written here in numpy."""
import numpy as np
import pytest
import torch

from mmssl_ext.evaluation import knn_classify, knn_evaluate


def reference_knn(train, train_y, test, test_y, k, T, num_classes, topk=(1, 5)):
    """Per query: cosine similarity to every train sample, sort, weighted votes exp(s/T)."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    scores = np.zeros((len(test), num_classes))
    for i, q in enumerate(test):
        sims = np.array([float(np.dot(q, t)) for t in train])
        order = np.argsort(-sims, kind='stable')[:k]
        for j in order:
            scores[i, train_y[j]] += np.exp(sims[j] / T)
    acc = {}
    for t in topk:
        ranked = np.argsort(-scores, axis=1, kind='stable')[:, :t]
        acc[t] = 100.0 * np.mean([test_y[i] in ranked[i] for i in range(len(test))])
    return scores, acc


@pytest.fixture
def clustered():
    rng = np.random.RandomState(0)
    num_classes, dim = 6, 16
    centres = rng.randn(num_classes, dim)
    train_y = rng.randint(0, num_classes, 300)
    test_y = rng.randint(0, num_classes, 70)
    # noisy clusters: kNN is right often but not always, so a wrong vote rule shows up
    train = centres[train_y] + 1.2 * rng.randn(300, dim)
    test = centres[test_y] + 1.2 * rng.randn(70, dim)
    return train.astype(np.float32), train_y, test.astype(np.float32), test_y, num_classes


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
@pytest.mark.parametrize('k,T', [(20, 0.07), (7, 0.5), (200, 0.07)])
def test_scores_match_reference(clustered, backend, k, T):
    train, train_y, test, test_y, C = clustered
    scores = knn_classify(train, train_y, test, k=k, temperature=T, num_classes=C,
                          backend=backend, chunk_size=16)
    ref, _ = reference_knn(train, train_y, test, test_y, k, T, C)
    np.testing.assert_allclose(scores.numpy(), ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
def test_accuracy_matches_reference(clustered, backend):
    train, train_y, test, test_y, C = clustered
    res = knn_evaluate(train, train_y, test, test_y, ks=(20, 200), temperature=0.07,
                       num_classes=C, backend=backend, chunk_size=9)
    assert set(res) == {'k20_top1', 'k20_top5', 'k200_top1', 'k200_top5'}
    for k in (20, 200):
        _, acc = reference_knn(train, train_y, test, test_y, k, 0.07, C)
        assert res[f'k{k}_top1'] == pytest.approx(acc[1])
        assert res[f'k{k}_top5'] == pytest.approx(acc[5])
    # the clusters are informative but overlapping: neither trivial nor random
    assert 40 < res['k20_top1'] < 100
    assert res['k20_top5'] >= res['k20_top1']


def test_chunking_does_not_change_results(clustered):
    train, train_y, test, test_y, C = clustered
    a = knn_classify(train, train_y, test, k=20, num_classes=C, backend='torch', chunk_size=1)
    b = knn_classify(train, train_y, test, k=20, num_classes=C, backend='torch',
                     chunk_size=10_000)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # float32 matmul rounding


def test_scale_invariant_and_torch_inputs(clustered):
    """Features are L2-normalised inside: scaling rows changes nothing; tensors are accepted."""
    train, train_y, test, test_y, C = clustered
    scale = np.random.RandomState(1).uniform(0.1, 10, size=(len(train), 1)).astype(np.float32)
    a = knn_evaluate(train, train_y, test, test_y, num_classes=C, backend='torch')
    b = knn_evaluate(torch.from_numpy(train * scale), torch.from_numpy(train_y),
                     torch.from_numpy(test), torch.from_numpy(test_y), num_classes=C,
                     backend='torch')
    assert a == pytest.approx(b)


def test_bad_inputs_are_named(clustered):
    train, train_y, test, test_y, C = clustered
    with pytest.raises(ValueError, match='k=500'):
        knn_classify(train, train_y, test, k=500)
    with pytest.raises(ValueError, match='dimensions differ'):
        knn_classify(train, train_y, test[:, :8], k=5)
    bad = test.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match='test features contain NaN'):
        knn_classify(train, train_y, bad, k=5)
    with pytest.raises(ValueError, match='labels'):
        knn_classify(train, train_y[:-1], test, k=5)
    with pytest.raises(ValueError, match='backend'):
        knn_classify(train, train_y, test, k=5, backend='annoy')
