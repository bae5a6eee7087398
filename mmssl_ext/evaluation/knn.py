"""Weighted k-nearest-neighbour classification, the field's quick probe of a representation.

The protocol of InstDisc (Wu et al. 2018) and DINO (Caron et al. 2021): features are
L2-normalised; for a test feature ``q`` the ``k`` training features with the highest cosine
similarity ``s_i`` vote for their labels with weight ``exp(s_i / T)``; the class scores are the sums
of the votes, and top-1 / top-5 accuracy are read from them.  Defaults: ``k`` in (20, 200),
``T = 0.07``.

The neighbour search never materialises the full ``N_test x N_train`` similarity matrix: the torch
backend works on chunks of test rows (``chunk_size x N_train`` at a time, on the features' device,
GPU included); the faiss backend (``IndexFlatIP``, exact) blocks the search internally.

Example:
    >>> res = knn_evaluate(train_f, train_y, test_f, test_y, ks=(20, 200))
    >>> res['k20_top1'], res['k200_top5']
"""
import importlib.util
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = Union[torch.Tensor, np.ndarray]


def _as_tensor(x: ArrayLike, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.to(dtype) if dtype is not None else t


def _check_inputs(train_feats: torch.Tensor, train_labels: torch.Tensor,
                  test_feats: torch.Tensor, k: int) -> None:
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError(f'features must be 2-D (N x D); got train {tuple(train_feats.shape)} '
                         f'and test {tuple(test_feats.shape)}')
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f'feature dimensions differ: train D={train_feats.shape[1]}, '
                         f'test D={test_feats.shape[1]}')
    if len(train_labels) != len(train_feats):
        raise ValueError(f'{len(train_feats)} train features but {len(train_labels)} labels')
    if k < 1 or k > len(train_feats):
        raise ValueError(f'k={k} must be between 1 and the number of train features '
                         f'({len(train_feats)})')
    for name, t in (('train', train_feats), ('test', test_feats)):
        if not torch.isfinite(t).all():
            raise ValueError(f'{name} features contain NaN or Inf')


def knn_neighbours(train_feats: ArrayLike, test_feats: ArrayLike, k: int,
                   chunk_size: int = 1024, backend: str = 'auto',
                   normalize: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities and indices of the ``k`` nearest train features of each test one.

    Args:
        backend: ``'torch'`` (chunked matmul + topk, any device), ``'faiss'`` (exact
            ``IndexFlatIP`` on CPU) or ``'auto'`` (faiss for CPU tensors when importable).

    Returns:
        ``(sims, idx)``, both ``N_test x k``, sorted by decreasing similarity.
    """
    train = _as_tensor(train_feats, torch.float32)
    test = _as_tensor(test_feats, torch.float32).to(train.device)
    if normalize:
        train = F.normalize(train, dim=1)
        test = F.normalize(test, dim=1)
    if backend == 'auto':
        has_faiss = importlib.util.find_spec('faiss') is not None
        backend = 'faiss' if train.device.type == 'cpu' and has_faiss else 'torch'
    if backend == 'faiss':
        import faiss
        index = faiss.IndexFlatIP(train.shape[1])
        index.add(np.ascontiguousarray(train.numpy()))
        sims, idx = [], []
        for start in range(0, len(test), chunk_size):
            s, i = index.search(np.ascontiguousarray(test[start:start + chunk_size].numpy()), k)
            sims.append(torch.from_numpy(s))
            idx.append(torch.from_numpy(i))
        return torch.cat(sims), torch.cat(idx)
    if backend != 'torch':
        raise ValueError(f"backend must be 'torch', 'faiss' or 'auto', got {backend!r}")
    sims, idx = [], []
    for start in range(0, len(test), chunk_size):
        s = test[start:start + chunk_size] @ train.T  # chunk_size x N_train, never N_test x N_train
        top = s.topk(k, dim=1)
        sims.append(top.values)
        idx.append(top.indices)
    return torch.cat(sims), torch.cat(idx)


def knn_scores(sims: torch.Tensor, idx: torch.Tensor, train_labels: torch.Tensor,
               num_classes: int, k: int, temperature: float = 0.07) -> torch.Tensor:
    """Class scores ``N_test x C`` from the first ``k`` neighbours: sum of ``exp(s / T)``."""
    sims, idx = sims[:, :k], idx[:, :k]
    labels = train_labels.to(idx.device)[idx]  # N x k
    weights = (sims / temperature).exp()
    scores = torch.zeros(len(idx), num_classes, dtype=weights.dtype, device=idx.device)
    scores.scatter_add_(1, labels, weights)
    return scores


def knn_classify(train_feats: ArrayLike, train_labels: ArrayLike, test_feats: ArrayLike,
                 k: int = 20, temperature: float = 0.07,
                 num_classes: Optional[int] = None, chunk_size: int = 1024,
                 backend: str = 'auto') -> torch.Tensor:
    """Weighted-kNN class scores (``N_test x C``) of ``test_feats``."""
    train_t = _as_tensor(train_feats, torch.float32)
    labels = _as_tensor(train_labels).long().flatten()
    test_t = _as_tensor(test_feats, torch.float32)
    _check_inputs(train_t, labels, test_t, k)
    num_classes = num_classes or int(labels.max()) + 1
    sims, idx = knn_neighbours(train_t, test_t, k, chunk_size, backend)
    return knn_scores(sims, idx, labels, num_classes, k, temperature)


def knn_evaluate(train_feats: ArrayLike, train_labels: ArrayLike,
                 test_feats: ArrayLike, test_labels: ArrayLike,
                 ks: Sequence[int] = (20, 200), temperature: float = 0.07,
                 topk: Sequence[int] = (1, 5), num_classes: Optional[int] = None,
                 chunk_size: int = 1024, backend: str = 'auto') -> Dict[str, float]:
    """Top-k accuracies (in %) of weighted kNN for each ``k`` in ``ks``.

    One neighbour search with ``max(ks)`` serves every ``k``.  Returns keys like
    ``'k20_top1'``, ``'k20_top5'``, ``'k200_top1'``.
    """
    train_t = _as_tensor(train_feats, torch.float32)
    labels = _as_tensor(train_labels).long().flatten()
    test_t = _as_tensor(test_feats, torch.float32)
    test_y = _as_tensor(test_labels).long().flatten()
    if len(test_y) != len(test_t):
        raise ValueError(f'{len(test_t)} test features but {len(test_y)} labels')
    ks = sorted(set(int(k) for k in ks))
    _check_inputs(train_t, labels, test_t, ks[-1])
    num_classes = num_classes or int(max(labels.max(), test_y.max())) + 1
    sims, idx = knn_neighbours(train_t, test_t, ks[-1], chunk_size, backend)
    out = {}
    for k in ks:
        scores = knn_scores(sims, idx, labels, num_classes, k, temperature)
        ranked = scores.topk(min(max(topk), num_classes), dim=1).indices.cpu()
        for t in topk:
            hit = (ranked[:, :t] == test_y[:, None]).any(dim=1).float().mean().item()
            out[f'k{k}_top{t}'] = 100.0 * hit
    return out
