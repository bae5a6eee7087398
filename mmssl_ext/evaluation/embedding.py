"""2-D pictures of a representation: t-SNE (and UMAP when ``umap-learn`` is installed) of
L2-normalised pooled features, coloured by class.

A picture is hard to compare across checkpoints by eye, so each embedding also gets two numbers:

* ``silhouette``: sklearn's silhouette score of the class labels in the 2-D layout
  (Euclidean; -1 .. 1, higher = classes form separate islands);
* ``knn_top1``: leave-one-out ``k``-nearest-neighbour accuracy (%) in the 2-D layout (majority
  vote of the ``k = 20`` nearest other points, ties to the lowest label).

Example:
    >>> emb = tsne_embedding(feats, seed=0)          # N x 2
    >>> embedding_scores(emb, labels)                # {'silhouette': ..., 'knn_top1': ...}
    >>> plot_embedding(emb, labels, class_names, 'tsne.png', title='PIRL')
"""
from typing import Dict, Optional, Sequence

import numpy as np

from .plots import label_colours, new_figure, save_figure

UMAP_MISSING = 'UMAP skipped: umap-learn is not installed (pip install umap-learn)'


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def tsne_embedding(feats, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """sklearn t-SNE to 2-D, PCA init, seeded; perplexity capped below ``(N - 1) / 3``."""
    from sklearn.manifold import TSNE
    x = _as_numpy(feats).astype(np.float32)
    n = len(x)
    if n < 3:
        raise ValueError(f't-SNE needs at least 3 points, got {n}')
    perplexity = float(min(perplexity, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, init='pca', random_state=seed, perplexity=perplexity,
                learning_rate='auto')
    return tsne.fit_transform(x)


def umap_available() -> bool:
    """Whether ``import umap`` (umap-learn) works."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def umap_embedding(feats, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """UMAP to 2-D (umap-learn), seeded, cosine metric; ``ImportError`` when not installed."""
    import umap
    x = _as_numpy(feats).astype(np.float32)
    reducer = umap.UMAP(n_components=2, random_state=seed, metric='cosine',
                        n_neighbors=int(min(n_neighbors, max(2, len(x) - 1))))
    return np.asarray(reducer.fit_transform(x))


def knn_accuracy_2d(emb, labels, k: int = 20) -> float:
    """Leave-one-out k-NN (majority vote) accuracy in % of the 2-D points."""
    from sklearn.neighbors import NearestNeighbors
    emb, labels = _as_numpy(emb), _as_numpy(labels).astype(np.int64)
    n = len(emb)
    if n < 2:
        raise ValueError('need at least 2 points')
    k = min(k, n - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb)
    correct = 0
    for i in range(n):
        others = [j for j in idx[i] if j != i][:k]
        votes = np.bincount(labels[others], minlength=labels.max() + 1)
        correct += int(votes.argmax() == labels[i])
    return 100.0 * correct / n


def embedding_scores(emb, labels, k: int = 20) -> Dict[str, Optional[float]]:
    """``silhouette`` (None with fewer than 2 or more than N-1 classes) and ``knn_top1``."""
    from sklearn.metrics import silhouette_score
    emb, labels = _as_numpy(emb), _as_numpy(labels)
    num_labels = len(np.unique(labels))
    sil = float(silhouette_score(emb, labels)) if 2 <= num_labels <= len(emb) - 1 else None
    return dict(silhouette=sil, knn_top1=knn_accuracy_2d(emb, labels, k))


def plot_embedding(emb, labels, class_names: Optional[Sequence[str]], path: str,
                   title: str = '', max_legend: int = 30) -> str:
    """Scatter of the 2-D points coloured by label, with a legend of class names."""
    emb, labels = _as_numpy(emb), _as_numpy(labels).astype(np.int64)
    present = sorted(set(labels.tolist()))
    num_colours = max(present) + 1 if present else 1
    if class_names:
        num_colours = max(num_colours, len(class_names))
    colours = label_colours(num_colours)
    fig = new_figure((7.5, 6))
    ax = fig.add_subplot(1, 1, 1)
    size = 4 if len(emb) > 1000 else 10
    for c in present:
        mask = labels == c
        name = class_names[c] if class_names and 0 <= c < len(class_names) else str(c)
        ax.scatter(emb[mask, 0], emb[mask, 1], s=size, color=colours[c], label=name,
                   linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize='medium')
    if len(present) <= max_legend:
        ax.legend(loc='center left', bbox_to_anchor=(1.0, 0.5), markerscale=2,
                  fontsize='small', frameon=False)
    return save_figure(fig, path)
