"""faiss k-means, nearest-centroid assignment and NMI, shared by ClusterFit and DeepCluster.

:func:`kmeans` runs the whole recipe on an ``N x D`` feature matrix::

    L2-normalise -> optional PCA (optionally whitened) -> L2-normalise again -> faiss k-means
    -> assign every sample to its nearest centroid -> re-seed clusters left empty

faiss (``faiss.Kmeans``, ``faiss.PCAMatrix``) does the numerical work, on the GPU when
``faiss.get_num_gpus() > 0``.  What faiss does not do and is hand-rolled here: input checks with
messages that name the problem, and a guarantee that no cluster is empty in the returned
assignment.  faiss already splits large clusters into empty ones *during* training, but the final
assignment (especially with duplicated samples, or when faiss trained on a subsample) can still
leave some cluster without members; for pseudo labels that is a class that never appears, so they
are re-seeded (:func:`reseed_empty_clusters`) and the number is returned and logged.

Example::

    >>> res = kmeans(features, k=100, niter=20, seed=0)
    >>> res.assignments.shape, res.centroids.shape, res.sizes.sum() == len(features)
    >>> labels = res.assign(new_features)        # same preprocessing, nearest centroid
"""
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import numpy as np

try:  # torch is optional here: numpy arrays work as well
    import torch
except ImportError:  # pragma: no cover
    torch = None

ArrayLike = Union[np.ndarray, 'torch.Tensor']


def _as_label_array(labels, name: str) -> np.ndarray:
    if torch is not None and isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    x = np.asarray(labels)
    if x.ndim != 1:
        raise ValueError(f'{name} must be a 1-D array of labels, got shape {tuple(x.shape)}')
    return x


def nmi(a: ArrayLike, b: ArrayLike) -> float:
    """Normalised mutual information of two labelings of the same samples (arithmetic-mean
    normalisation, scikit-learn's ``normalized_mutual_info_score``): 1 for the same partition up
    to relabelling, 0 for independent ones; 1.0 when both put every sample in one cluster.

    Args:
        a, b: 1-D label arrays or tensors of the same length (any integer ids).

    Raises:
        ValueError: not 1-D, or different lengths.
        ImportError: scikit-learn is not installed (it is in requirements.txt).
    """
    a, b = _as_label_array(a, 'a'), _as_label_array(b, 'b')
    if len(a) != len(b):
        raise ValueError(f'nmi: the labelings have different lengths ({len(a)} and {len(b)})')
    try:
        from sklearn.metrics import normalized_mutual_info_score
    except ImportError as e:  # pragma: no cover - scikit-learn is in requirements.txt
        raise ImportError('mmssl_ext.clustering.nmi needs scikit-learn: '
                          'pip install scikit-learn') from e
    return float(normalized_mutual_info_score(a, b))


def _logger():
    from mmengine.logging import MMLogger
    return MMLogger.get_current_instance()


def _import_faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is in requirements.txt
        raise ImportError('mmssl_ext.clustering needs faiss: pip install faiss-cpu '
                          '(or faiss-gpu)') from e
    return faiss


def faiss_num_gpus() -> int:
    """Number of GPUs faiss can use (0 for faiss-cpu)."""
    faiss = _import_faiss()
    get = getattr(faiss, 'get_num_gpus', None)
    return int(get()) if get is not None else 0


def _use_gpu(gpu) -> bool:
    if gpu == 'auto':
        return faiss_num_gpus() > 0
    if gpu and faiss_num_gpus() == 0:
        raise RuntimeError('gpu=True but faiss sees no GPU (faiss-cpu installed, or no CUDA '
                           "device); pass gpu=False or gpu='auto'")
    return bool(gpu)


def as_float32_matrix(features: ArrayLike, name: str = 'features') -> np.ndarray:
    """``features`` as a C-contiguous float32 ``N x D`` numpy array, checked.

    Raises:
        ValueError: not 2-D, empty, or containing NaN/Inf (names how many rows and the first).
    """
    if torch is not None and isinstance(features, torch.Tensor):
        features = features.detach().cpu().float().numpy()
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f'{name} must be a 2-D array (N samples x D dims), got shape '
                         f'{tuple(x.shape)}')
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f'{name} is empty: shape {tuple(x.shape)}')
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f'{name} contain NaN/Inf in {len(rows)} of {len(x)} rows (first bad '
                         f'row: {int(rows[0])}); check the feature extractor / checkpoint')
    return x


def normalize_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


@dataclass
class PCA:
    """A trained PCA (faiss ``PCAMatrix``) as plain arrays: ``y = x @ A.T + b``."""
    A: np.ndarray  # D' x D
    b: np.ndarray  # D'
    eigenvalues: np.ndarray  # D (all of them, descending)
    whiten: bool

    @property
    def out_dim(self) -> int:
        return int(self.A.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x @ self.A.T + self.b, dtype=np.float32)


def train_pca(x: np.ndarray, dim: int, whiten: bool = False,
              whiten_eps: float = 1e-5) -> PCA:
    """Fit faiss's ``PCAMatrix`` on ``x``; ``whiten`` scales component ``i`` by
    ``1 / sqrt(eigenvalue_i + whiten_eps * max eigenvalue)``.

    The regulariser matters when ``dim`` reaches the rank of ``x`` (e.g. PCA to 256 of 256-d
    ReLU features with dead channels): faiss's own whitening (``eigen_power=-0.5``) divides by
    the square root of a zero eigenvalue there and returns inf / NaN.
    """
    faiss = _import_faiss()
    n, d = x.shape
    if not 1 <= dim <= d:
        raise ValueError(f'pca_dim must be in [1, {d}] (the feature dimension), got {dim}')
    if dim > n:
        raise ValueError(f'pca_dim={dim} needs at least {dim} samples, got {n}')
    mat = faiss.PCAMatrix(d, dim, 0.0)
    mat.train(x)
    A = faiss.vector_to_array(mat.A).reshape(mat.d_out, mat.d_in).astype(np.float64)
    b = faiss.vector_to_array(mat.b).astype(np.float64)
    eig = faiss.vector_to_array(mat.eigenvalues).astype(np.float64)
    if whiten:
        floor = whiten_eps * max(float(eig.max()), np.finfo(np.float32).tiny)
        scale = 1.0 / np.sqrt(np.clip(eig[:dim], 0.0, None) + floor)
        A = A * scale[:, None]
        b = b * scale
    return PCA(A=A.astype(np.float32), b=b.astype(np.float32), eigenvalues=eig.astype(np.float32),
               whiten=whiten)


def nearest_centroid(x: np.ndarray, centroids: np.ndarray,
                     gpu='auto') -> Tuple[np.ndarray, np.ndarray]:
    """Exact L2 assignment with a faiss flat index: ``(labels int64 [N], sq. distances [N])``."""
    faiss = _import_faiss()
    index = faiss.IndexFlatL2(centroids.shape[1])
    if _use_gpu(gpu):  # pragma: no cover - no GPU on the CI machine
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64), dist[:, 0].astype(np.float32)


def reseed_empty_clusters(x: np.ndarray, centroids: np.ndarray, assignments: np.ndarray,
                          max_rounds: int = 10, gpu='auto') -> Tuple[np.ndarray, np.ndarray,
                                                                     List[int], int]:
    """Give every empty cluster members by splitting the currently largest cluster.

    One round: for each empty cluster ``j``, take the largest cluster ``c``, make its member
    farthest from ``c``'s centroid the new centroid of ``j``, move that member and every member of
    ``c`` strictly closer to it than to ``c``'s centroid into ``j``, and recompute both
    centroids; then re-assign all samples to their nearest centroid.  Rounds repeat while some
    cluster is empty (at most ``max_rounds``).  If the global re-assignment keeps emptying
    clusters (exact duplicates tie), the last split is kept without re-assignment, so the result
    never has an empty cluster as long as ``K <= N``.

    Returns:
        ``(centroids, assignments, reseeded cluster ids (sorted, distinct), rounds used)``.
    """
    k = len(centroids)
    centroids = centroids.astype(np.float32, copy=True)
    assignments = assignments.astype(np.int64, copy=True)
    reseeded = set()
    rounds = 0

    def split_into(j: int, sizes: np.ndarray) -> None:
        c = int(np.argmax(sizes))
        members = np.flatnonzero(assignments == c)
        d_c = ((x[members] - centroids[c]) ** 2).sum(1)
        p = members[int(np.argmax(d_c))]
        d_p = ((x[members] - x[p]) ** 2).sum(1)
        moving = d_p < d_c
        moving[members == p] = True
        if moving.all():  # cannot happen (the mean is closer on average); be safe
            moving[:] = members == p
        assignments[members[moving]] = j
        sizes[c] -= int(moving.sum())
        sizes[j] += int(moving.sum())
        centroids[j] = x[members[moving]].mean(0)
        centroids[c] = x[members[~moving]].mean(0)
        reseeded.add(int(j))

    sizes = np.bincount(assignments, minlength=k)
    while (sizes == 0).any() and rounds < max_rounds:
        rounds += 1
        for j in np.flatnonzero(sizes == 0):
            split_into(int(j), sizes)
        # a Lloyd assignment step with the new centroids
        new_assign, _ = nearest_centroid(x, centroids, gpu)
        new_sizes = np.bincount(new_assign, minlength=k)
        if (new_sizes == 0).any() and rounds == max_rounds:
            break  # keep the split assignment, which has no empty cluster
        assignments[:] = new_assign
        sizes = new_sizes
    return centroids, assignments, sorted(reseeded), rounds


@dataclass
class KMeansResult:
    """What :func:`kmeans` returns.

    Attributes:
        assignments: int64 ``[N]`` cluster id of every sample (no cluster is empty).
        centroids: float32 ``[K, D']`` in the clustered space (after normalisation / PCA).
        sizes: int64 ``[K]`` number of samples per cluster.
        objective: sum over samples of the squared L2 distance to the assigned centroid
            (inertia), after re-seeding.
        num_reseeded: number of clusters that were empty after faiss and got re-seeded.
        pca: the PCA used (``None`` without ``pca_dim``).
        l2_normalize: whether features were L2-normalised (before and after PCA).
        objective_history: faiss's objective at each training iteration.
        reseeded: ids of the re-seeded clusters; timings: seconds per phase.
    """
    assignments: np.ndarray
    centroids: np.ndarray
    sizes: np.ndarray
    objective: float
    num_reseeded: int
    pca: Optional[PCA] = None
    l2_normalize: bool = True
    objective_history: List[float] = field(default_factory=list)
    reseeded: List[int] = field(default_factory=list)
    reseed_rounds: int = 0
    niter: int = 0
    seed: int = 0
    gpu: bool = False
    timings: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(len(self.centroids))

    def transform(self, features: ArrayLike) -> np.ndarray:
        """Apply the same preprocessing (L2, PCA, L2) as the clustered features got."""
        x = as_float32_matrix(features)
        return preprocess(x, self.l2_normalize, self.pca)

    def assign(self, features: ArrayLike, gpu='auto') -> np.ndarray:
        """Nearest-centroid labels of new features (same preprocessing)."""
        x = self.transform(features)
        if x.shape[1] != self.centroids.shape[1]:
            raise ValueError(f'features have {x.shape[1]} dims after preprocessing, the '
                             f'centroids {self.centroids.shape[1]}')
        return nearest_centroid(x, self.centroids, gpu)[0]

    def summary(self) -> dict:
        """JSON-friendly description (no arrays except the sizes)."""
        return dict(k=self.k, num_samples=int(len(self.assignments)),
                    dim=int(self.centroids.shape[1]), objective=float(self.objective),
                    num_reseeded=int(self.num_reseeded), reseeded=list(self.reseeded),
                    reseed_rounds=int(self.reseed_rounds),
                    min_size=int(self.sizes.min()), max_size=int(self.sizes.max()),
                    sizes=[int(s) for s in self.sizes], niter=int(self.niter),
                    seed=int(self.seed), gpu=bool(self.gpu),
                    l2_normalize=bool(self.l2_normalize),
                    pca_dim=None if self.pca is None else self.pca.out_dim,
                    whiten=None if self.pca is None else bool(self.pca.whiten),
                    objective_history=[float(o) for o in self.objective_history],
                    timings={k: round(float(v), 3) for k, v in self.timings.items()})


def preprocess(x: np.ndarray, l2: bool, pca: Optional[PCA]) -> np.ndarray:
    if l2:
        x = normalize_rows(x)
    if pca is not None:
        x = pca.apply(x)
        if l2:
            x = normalize_rows(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def kmeans(features: ArrayLike,
           k: int,
           niter: int = 20,
           seed: int = 0,
           pca_dim: Optional[int] = None,
           whiten: bool = False,
           l2_normalize: bool = True,
           gpu='auto',
           verbose: bool = False,
           max_points_per_centroid: Optional[int] = None,
           nredo: int = 1,
           max_reseed_rounds: int = 10,
           init_centroids: Optional[np.ndarray] = None) -> KMeansResult:
    """k-means with faiss on (optionally L2-normalised / PCA-reduced) features.

    Args:
        features: ``N x D`` array or tensor.
        k: number of clusters, ``1 <= k <= N``.
        niter: Lloyd iterations (faiss ``niter``).
        seed: faiss random seed (initial centroids, subsampling).
        pca_dim: reduce to this many dimensions with faiss ``PCAMatrix`` first.
        whiten: PCA whitening (``eigen_power=-0.5``, as DeepCluster).
        l2_normalize: L2-normalise the features, and again after PCA.
        gpu: ``'auto'`` (GPU faiss when ``faiss.get_num_gpus() > 0``), ``True`` or ``False``.
        verbose: faiss prints the objective of every iteration (the progress display).
        max_points_per_centroid: faiss subsamples the training set to ``k`` times this (default
            256); every sample is assigned at the end anyway.
        nredo: faiss restarts, the best objective is kept.
        max_reseed_rounds: bound on :func:`reseed_empty_clusters` rounds.
        init_centroids: ``K x D'`` starting centroids (in the preprocessed space) instead of a
            random draw.

    Raises:
        ValueError: ``k < 1``, ``k > N``, non-2-D input, NaN/Inf rows, bad ``pca_dim``.
    """
    faiss = _import_faiss()
    t0 = time.perf_counter()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f'k must be an integer, got {k!r}')
    k = int(k)
    if k < 1:
        raise ValueError(f'k (number of clusters) must be >= 1, got {k}')
    if niter < 0:
        raise ValueError(f'niter must be >= 0, got {niter}')
    x = as_float32_matrix(features)
    n = len(x)
    if k > n:
        raise ValueError(f'cannot make k={k} clusters from {n} samples: k must not exceed the '
                         f'number of samples ({n})')
    use_gpu = _use_gpu(gpu)
    timings = {}

    pca = None
    if pca_dim is not None:
        t = time.perf_counter()
        pca = train_pca(normalize_rows(x) if l2_normalize else x, int(pca_dim), whiten)
        timings['pca'] = time.perf_counter() - t
    x = preprocess(x, l2_normalize, pca)
    if not np.isfinite(x).all():  # e.g. whitening a rank-deficient matrix
        bad = np.flatnonzero(~np.isfinite(x).all(1))
        raise ValueError(f'features contain NaN/Inf after PCA (pca_dim={pca_dim}, whiten='
                         f'{whiten}) in {len(bad)} rows (first bad row: {int(bad[0])}); use a '
                         f'smaller pca_dim or whiten=False')
    d = x.shape[1]

    t = time.perf_counter()
    params = dict(niter=int(niter), seed=int(seed), verbose=bool(verbose), nredo=int(nredo),
                  min_points_per_centroid=1, spherical=False)
    if max_points_per_centroid is not None:
        params['max_points_per_centroid'] = int(max_points_per_centroid)
    if use_gpu:  # pragma: no cover - no GPU on the CI machine
        params['gpu'] = True
    km = faiss.Kmeans(d, k, **params)
    if init_centroids is not None:
        init = np.ascontiguousarray(init_centroids, dtype=np.float32)
        if init.shape != (k, d):
            raise ValueError(f'init_centroids must have shape {(k, d)}, got {init.shape}')
        km.train(x, init_centroids=init)
    else:
        km.train(x)
    timings['train'] = time.perf_counter() - t
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32).reshape(k, d)
    history = [float(o) for o in getattr(km, 'obj', [])]

    t = time.perf_counter()
    assignments, _ = nearest_centroid(x, centroids, use_gpu)
    centroids, assignments, reseeded, rounds = reseed_empty_clusters(
        x, centroids, assignments, max_rounds=max_reseed_rounds, gpu=use_gpu)
    timings['assign'] = time.perf_counter() - t
    sizes = np.bincount(assignments, minlength=k).astype(np.int64)
    objective = float(((x - centroids[assignments]).astype(np.float64) ** 2).sum())
    if reseeded:
        _logger().warning(
            f'k-means: {len(reseeded)} of {k} clusters were empty after faiss and were '
            f're-seeded by splitting the largest clusters ({rounds} round(s)); '
            f'{int((sizes == 0).sum())} empty now')
    timings['total'] = time.perf_counter() - t0
    return KMeansResult(assignments=assignments, centroids=centroids, sizes=sizes,
                        objective=objective, num_reseeded=len(reseeded), pca=pca,
                        l2_normalize=l2_normalize, objective_history=history,
                        reseeded=reseeded, reseed_rounds=rounds, niter=int(niter),
                        seed=int(seed), gpu=use_gpu, timings=timings)
