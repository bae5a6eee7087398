"""mmssl_ext.clustering: faiss k-means wrapper (recovery, input errors, empty clusters, PCA) and
NMI."""
import numpy as np
import pytest
import torch

from mmssl_ext.clustering import kmeans, nearest_centroid, nmi, reseed_empty_clusters


def _blobs(k=4, per=30, dim=8, seed=0, spread=0.05):
    rng = np.random.RandomState(seed)
    centres = np.linalg.qr(rng.randn(dim, dim))[0][:k] * 5  # orthogonal directions
    y = np.repeat(np.arange(k), per)
    x = centres[y] + spread * rng.randn(len(y), dim)
    perm = rng.permutation(len(y))
    return x[perm].astype(np.float32), y[perm]


def _is_relabelling(truth, pred):
    """Every true class maps to exactly one cluster and vice versa (a permutation)."""
    k = truth.max() + 1
    cont = np.zeros((k, pred.max() + 1), dtype=int)
    np.add.at(cont, (truth, pred), 1)
    return cont.shape == (k, k) and ((cont > 0).sum(0) == 1).all() and \
        ((cont > 0).sum(1) == 1).all()


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_blobs_recovered_up_to_relabelling(seed):
    x, y = _blobs(seed=seed)
    res = kmeans(torch.from_numpy(x), k=4, niter=20, seed=seed, nredo=3)
    assert res.assignments.dtype == np.int64 and res.assignments.shape == (120, )
    assert res.centroids.shape == (4, 8) and res.centroids.dtype == np.float32
    assert _is_relabelling(y, res.assignments), np.unique(np.c_[y, res.assignments], axis=0)
    assert sorted(res.sizes.tolist()) == [30, 30, 30, 30]
    assert res.num_reseeded == 0 and res.reseeded == []
    # objective = inertia of the L2-normalised features around the returned centroids
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    inertia = ((xn - res.centroids[res.assignments]) ** 2).sum()
    assert res.objective == pytest.approx(float(inertia), rel=1e-4)
    assert res.objective < 0.01 * len(x)
    # new samples land in their blob's cluster
    np.testing.assert_array_equal(res.assign(x), res.assignments)


def test_k_larger_than_n_names_both_numbers():
    with pytest.raises(ValueError, match=r'k=6 clusters from 5 samples'):
        kmeans(np.random.rand(5, 3), k=6)


def test_nan_rows_are_named():
    x = np.random.RandomState(0).rand(20, 4).astype(np.float32)
    x[7, 1] = np.nan
    x[12, 0] = np.inf
    with pytest.raises(ValueError, match=r'NaN/Inf in 2 of 20 rows \(first bad row: 7\)'):
        kmeans(x, k=2)


@pytest.mark.parametrize('shape,match', [((10, ), 'must be a 2-D array.*got shape \\(10,\\)'),
                                         ((2, 5, 3), 'got shape \\(2, 5, 3\\)')])
def test_non_2d_input(shape, match):
    with pytest.raises(ValueError, match=match):
        kmeans(np.zeros(shape, dtype=np.float32), k=1)


def test_k_below_one():
    with pytest.raises(ValueError, match='must be >= 1, got 0'):
        kmeans(np.random.rand(5, 3), k=0)


def test_empty_cluster_from_degenerate_init_is_reseeded():
    """A starting centroid far from every sample, no faiss iteration: faiss leaves it empty, the
    re-seeding splits the largest cluster and the assignment is accepted in round one."""
    x, _ = _blobs(k=2, per=20, dim=4)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    init = np.stack([xn[0], xn[1] * 0 + 100.0])  # centroid 1: nowhere near the unit sphere
    res = kmeans(x, k=2, niter=0, init_centroids=init)
    assert res.num_reseeded == 1 and res.reseeded == [1] and res.reseed_rounds == 1
    assert (res.sizes > 0).all() and res.sizes.sum() == 40
    assert np.abs(res.centroids[1]).max() < 2  # re-seeded inside the data
    # the accepted assignment is a nearest-centroid assignment
    np.testing.assert_array_equal(nearest_centroid(xn, res.centroids, gpu=False)[0],
                                  res.assignments)


def test_empty_cluster_with_duplicates_is_forced_nonempty():
    """Two distinct points, 10 copies each, K=3: no nearest-centroid assignment can fill three
    clusters, so faiss leaves one empty; the split is kept and reported."""
    a, b = np.eye(3, dtype=np.float32)[:2]
    x = np.stack([a] * 10 + [b] * 10)
    res = kmeans(x, k=3, niter=5, seed=0)
    assert res.num_reseeded >= 1 and len(res.reseeded) == res.num_reseeded
    assert (res.sizes > 0).all() and res.sizes.sum() == 20
    assert res.summary()['num_reseeded'] == res.num_reseeded
    # copies of one point never share a cluster with the other point
    for c in range(3):
        members = x[res.assignments == c]
        assert (members == members[0]).all()


def test_reseed_splits_largest_cluster():
    x = np.array([[0, 0], [0, 1], [0, 2], [0, 10], [5, 5]], dtype=np.float32)
    centroids = np.array([[0, 3.25], [5, 5], [100, 100]], dtype=np.float32)
    assign = np.array([0, 0, 0, 0, 1])
    c, a, reseeded, rounds = reseed_empty_clusters(x, centroids, assign, gpu=False)
    assert reseeded == [2] and rounds == 1
    assert np.bincount(a, minlength=3).min() >= 1
    assert a[3] == 2  # the farthest member of the largest cluster seeded the empty one
    np.testing.assert_allclose(c[2], [0, 10])


def test_pca_reduces_dimension():
    x, y = _blobs(k=4, per=25, dim=32, seed=3)
    res = kmeans(x, k=4, pca_dim=6, seed=0, nredo=3)
    assert res.centroids.shape == (4, 6)
    assert res.pca is not None and res.pca.A.shape == (6, 32) and res.pca.out_dim == 6
    assert res.transform(x).shape == (100, 6)
    np.testing.assert_allclose(np.linalg.norm(res.transform(x), axis=1), 1, rtol=1e-5)
    assert _is_relabelling(y, res.assignments)
    assert res.summary()['pca_dim'] == 6
    white = kmeans(x, k=4, pca_dim=3, whiten=True, seed=0)
    assert white.centroids.shape == (4, 3) and np.isfinite(white.centroids).all()
    with pytest.raises(ValueError, match=r'pca_dim must be in \[1, 32\].*got 40'):
        kmeans(x, k=4, pca_dim=40)


def test_whitening_is_regularised_for_rank_deficient_features():
    """PCA to the full dimension of features with dead (constant) channels, as DeepCluster's
    PCA-256 + whitening does on a 256-channel backbone: finite, and the live components come out
    with unit variance (an independent eigen-decomposition in the test)."""
    from mmssl_ext.clustering import train_pca
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((500, 8)) * np.array([5, 4, 3, 2, 1, 1, 1, 1])).astype(np.float32)
    x[:, 6:] = 0.5  # two dead channels: rank 6 of 8
    pca = train_pca(x, 8, whiten=True)
    y = pca.apply(x)
    assert np.isfinite(y).all()
    cov = np.cov(x.astype(np.float64), rowvar=False, bias=True)
    var_pc = np.sort(np.linalg.eigvalsh(cov))[::-1]  # variance along each principal axis
    n = len(x)  # faiss's eigenvalues are sums of squares, n x the variance
    np.testing.assert_allclose(pca.eigenvalues[:6], n * var_pc[:6], rtol=1e-3)
    var = y.astype(np.float64).var(axis=0)
    # whitened as faiss does (scale 1 / sqrt(eigenvalue)), plus the floor 1e-5 x the largest
    expect = var_pc[:6] / (n * var_pc[:6] + 1e-5 * n * var_pc[0])
    np.testing.assert_allclose(var[:6], expect, rtol=1e-3)
    # without the floor this is faiss's whitening: equal variances 1 / n on the live axes
    np.testing.assert_allclose(var[:6] * n, 1.0, rtol=1e-3)
    assert np.abs(y[:, 6:]).max() < 1e-2  # the dead directions stay (near) zero, not inf
    res = kmeans(x, k=3, pca_dim=8, whiten=True, seed=0)
    assert np.isfinite(res.centroids).all()


def test_nmi_values_and_input_types():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(a, (a + 1) % 3) == pytest.approx(1.0)  # relabelling
    assert nmi(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    # by hand: b determines a, so I = H(a) = log 2; H(b) = 1.5 log 2; I / mean(H) = 0.8
    assert nmi([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(0.8)
    assert nmi(np.zeros(5, int), np.zeros(5, int)) == 1.0  # one cluster each
    t = torch.tensor([0, 0, 1, 1, 2, 2])
    value = nmi(t, np.array([1, 1, 0, 0, 0, 0]))
    assert isinstance(value, float)
    assert value == pytest.approx(nmi(t.numpy(), np.array([1, 1, 0, 0, 0, 0])))
    with pytest.raises(ValueError, match='different lengths'):
        nmi(a, a[:-1])
    with pytest.raises(ValueError, match='1-D'):
        nmi(a.reshape(2, 3), a.reshape(2, 3))
