"""VOC07-style linear SVM benchmark (Goyal et al. 2019, "Scaling and benchmarking
self-supervised visual representation learning"; PIRL Figs. 9 / 12, ClusterFit Fig. 2).

The protocol of VISSL (``vissl/utils/svm_utils/svm_trainer.py``, ``svm_low_shot_trainer.py``,
``configs/config/benchmark/linear_image_classification/voc07/eval_resnet_8gpu_transfer_voc07_
svm.yaml``, ``low_shot_transfer/voc07/...low_shot_svm.yaml``) and mmselfsup's
``tools/benchmarks/classification/svm_voc07``:

* features: one pooled map per layer (see :mod:`~mmssl_ext.evaluation.layer_probe`), each
  L2-normalised as ``f / (||f|| + 1e-5)``;
* one binary problem per class ("one vs rest"): scikit-learn's ``LinearSVC`` (liblinear, dual,
  L2 penalty, squared hinge, ``tol=1e-4``, ``max_iter=2000``, class weight 2 for the positives);
* for each class and each cost ``C`` of :data:`REFERENCE_COSTS`, 3-fold cross-validated average
  precision on the train split (``StratifiedKFold``, no shuffle, as ``cross_val_score(cv=3)``);
  the class keeps the cost with the best cross-validated AP (first on ties) and its SVM is
  fitted on the whole train split;
* test: average precision of each class on the test split (the VOC all-point interpolated AP of
  VISSL's ``get_precision_recall``), averaged over the classes: mAP (in %).

Targets are an ``N x C`` matrix of ``1`` (positive), ``0`` (negative), ``-1`` (ignore: a VOC
class present only as "difficult" objects, or an image a low-shot sample did not draw).  As in the
reference, training treats ``-1`` as a negative in the full benchmark and test ignores it.  A
single-label set (Fashion-MNIST) is ``C`` one-vs-rest problems of its one-hot labels.

Low-shot (:func:`low_shot_sample`, :func:`low_shot_svm`): for each class, ``k`` positives and
``(C - 1) * k`` negatives of that class drawn from the *train* split, for ``k`` in
:data:`LOW_SHOT_K` and the independent samples :data:`LOW_SHOT_SAMPLES`; SVMs for every cost,
test mAP on the full test split.  The reference aggregates per ``k`` the mean / min / max / std
over the samples at the cost with the best *mean test* mAP; :func:`low_shot_svm` reports that and
the whole cost x sample table (pass one cost to leave the test split out of the choice).
"""
import warnings
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence

import numpy as np

from .plots import new_figure, save_figure

#: VISSL's VOC07 SVM cost sweep (full and low-shot configs)
REFERENCE_COSTS = (0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0)
#: VISSL / mmselfsup low-shot samples per class and independent samples
LOW_SHOT_K = (1, 2, 4, 8, 16, 32, 64, 96)
LOW_SHOT_SAMPLES = (1, 2, 3, 4, 5)
CROSS_VAL_FOLDS = 3
MAX_ITER = 2000
POSITIVE_WEIGHT = 2
IGNORE = -1
COST_SELECTION = ('full: per class, the cost with the best {folds}-fold cross-validated AP on '
                  'the train split; low-shot: per k, the cost with the best mean test mAP over '
                  'the samples (VISSL / mmselfsup aggregation)')


def _class_name(c: int, class_names: Optional[Sequence[str]]) -> str:
    return f'{c} ({class_names[c]})' if class_names and c < len(class_names) else str(c)


def targets_from_labels(labels, num_classes: Optional[int] = None) -> np.ndarray:
    """``N x C`` one-vs-rest targets (1 / 0) of single labels ``0 .. C-1``."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if labels.size and labels.min() < 0:
        raise ValueError(f'labels must be >= 0 (a sample without a label?), got {labels.min()}')
    num_classes = num_classes or int(labels.max()) + 1
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f'label {labels.max()} >= num_classes {num_classes}')
    targets = np.zeros((len(labels), num_classes), dtype=np.int8)
    targets[np.arange(len(labels)), labels] = 1
    return targets


def dataset_targets(dataset, num_classes: Optional[int] = None) -> np.ndarray:
    """Targets of an mmpretrain dataset (through ``torch.utils.data.Subset``) from its data
    infos: ``gt_label`` (an int, or a list for multi-label sets such as ``VOC``) is 1,
    ``gt_label_difficult`` alone is -1 (ignore), everything else 0."""
    indices = None
    while hasattr(dataset, 'indices') and hasattr(dataset, 'dataset'):  # Subset
        sub = list(dataset.indices)
        indices = sub if indices is None else [sub[i] for i in indices]
        dataset = dataset.dataset
    if not hasattr(dataset, 'get_data_info'):
        raise TypeError(f'{type(dataset).__name__} has no get_data_info: the SVM benchmark '
                        f'reads labels from an mmpretrain dataset')
    indices = range(len(dataset)) if indices is None else indices
    if num_classes is None:
        classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
        num_classes = len(classes) if classes else None
    rows = []
    for i in indices:
        info = dataset.get_data_info(i)
        gt = info.get('gt_label')
        if gt is None:
            raise ValueError(f'sample {i} of {type(dataset).__name__} has no gt_label: the SVM '
                             f'benchmark needs a labelled set')
        pos = [int(v) for v in np.asarray(gt).reshape(-1)]
        difficult = [int(v) for v in np.asarray(info.get('gt_label_difficult') or []).reshape(-1)]
        rows.append((pos, difficult))
    if num_classes is None:
        num_classes = 1 + max(max(p + d, default=-1) for p, d in rows)
    targets = np.zeros((len(rows), num_classes), dtype=np.int8)
    for r, (pos, difficult) in enumerate(rows):
        targets[r, difficult] = IGNORE
        targets[r, pos] = 1
    return targets


def normalize_features(feats) -> np.ndarray:
    """``f / (||f|| + 1e-5)`` per row, in float64 (the reference's normalisation)."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-5)


def voc_ap(labels, scores) -> float:
    """VOC all-point interpolated average precision (0..1) of ``scores`` for binary ``labels``
    (``> 0`` positive); the area under the monotone envelope of the precision-recall curve."""
    labels = np.asarray(labels).reshape(-1) > 0
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(labels) != len(scores):
        raise ValueError(f'{len(labels)} labels and {len(scores)} scores')
    npos = int(labels.sum())
    if npos == 0:
        raise ValueError('average precision is undefined without a positive sample')
    order = np.argsort(-scores, kind='stable')
    tp = np.cumsum(labels[order])
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / npos
    envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1][:-1]
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_steps * envelope))


def make_svm(cost: float, max_iter: int = MAX_ITER):
    """The reference's ``LinearSVC`` for one class and one cost."""
    from sklearn.svm import LinearSVC
    return LinearSVC(C=cost, class_weight={1: POSITIVE_WEIGHT, -1: 1}, intercept_scaling=1.0,
                     penalty='l2', loss='squared_hinge', tol=1e-4, dual=True,
                     max_iter=max_iter)


def _binary(column: np.ndarray) -> np.ndarray:
    """+1 for positives, -1 for the rest (negatives and ignored)."""
    return np.where(column == 1, 1, -1).astype(np.int32)


def _check_train_targets(targets: np.ndarray, min_count: int,
                         class_names: Optional[Sequence[str]], why: str) -> None:
    for c in range(targets.shape[1]):
        pos = int((targets[:, c] == 1).sum())
        neg = int((targets[:, c] != 1).sum())
        if pos < min_count or neg < min_count:
            raise ValueError(
                f'class {_class_name(c, class_names)} has {pos} positive and {neg} negative '
                f'training samples; {why} needs at least {min_count} of each (use more '
                f'training images, or drop the class)')


def cross_val_ap(feats: np.ndarray, labels: np.ndarray, cost: float,
                 folds: int = CROSS_VAL_FOLDS, max_iter: int = MAX_ITER) -> float:
    """Mean AP over ``folds`` stratified folds (sklearn's ``average_precision`` scorer)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    return float(cross_val_score(make_svm(cost, max_iter), feats, labels,
                                 cv=StratifiedKFold(n_splits=folds),
                                 scoring='average_precision').mean())


@contextmanager
def quiet_convergence():
    """Silence liblinear's ``ConvergenceWarning`` (large costs stop at ``max_iter``, as in the
    reference).  Entered in the calling thread, around the worker threads."""
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        yield


def _train_class(feats, column, costs, folds, max_iter):
    labels = _binary(column)
    cv = [cross_val_ap(feats, labels, cost, folds, max_iter) for cost in costs]
    best = int(np.argmax(cv))
    return cv, best, make_svm(costs[best], max_iter).fit(feats, labels)


def train_svms(feats, targets, costs: Sequence[float] = REFERENCE_COSTS,
               folds: int = CROSS_VAL_FOLDS, max_iter: int = MAX_ITER, n_jobs: int = 1,
               class_names: Optional[Sequence[str]] = None) -> dict:
    """One SVM per class at its cross-validated cost (features as given: normalise first).

    Returns:
        ``dict(models=[LinearSVC per class], cv_ap=C x K array, chosen_cost=[C])``.
    """
    from joblib import Parallel, delayed
    feats = np.asarray(feats, dtype=np.float64)
    targets = np.asarray(targets)
    if feats.ndim != 2 or targets.ndim != 2 or len(feats) != len(targets):
        raise ValueError(f'features {feats.shape} and targets {targets.shape}: give N x D '
                         f'features and N x C targets')
    if not costs:
        raise ValueError('give at least one SVM cost')
    _check_train_targets(targets, folds, class_names, f'{folds}-fold cross-validation')
    with quiet_convergence():
        out = Parallel(n_jobs=n_jobs, prefer='threads')(
            delayed(_train_class)(feats, targets[:, c], list(costs), folds, max_iter)
            for c in range(targets.shape[1]))
    return dict(models=[m for _, _, m in out], cv_ap=np.array([cv for cv, _, _ in out]),
                chosen_cost=[float(costs[best]) for _, best, _ in out])


def class_ap(model, feats: np.ndarray, column: np.ndarray, name: str) -> float:
    """Test AP (0..1) of one class's SVM; samples with target -1 are left out."""
    keep = column != IGNORE
    if not (column[keep] == 1).any():
        raise ValueError(f'class {name} has no positive test sample: its AP is undefined '
                         f'(check the test split)')
    return voc_ap(column[keep], model.decision_function(feats[keep]))


def class_aps(models: Sequence, feats, targets,
              class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Test AP (0..1) of each class's SVM (:func:`class_ap`)."""
    feats = np.asarray(feats, dtype=np.float64)
    targets = np.asarray(targets)
    if len(models) != targets.shape[1]:
        raise ValueError(f'{len(models)} SVMs for {targets.shape[1]} test classes')
    return np.array([class_ap(m, feats, targets[:, c], _class_name(c, class_names))
                     for c, m in enumerate(models)])


def svm_map(train_feats, train_targets, test_feats, test_targets,
            costs: Sequence[float] = REFERENCE_COSTS, folds: int = CROSS_VAL_FOLDS,
            normalize: bool = True, max_iter: int = MAX_ITER, n_jobs: int = 1,
            class_names: Optional[Sequence[str]] = None) -> dict:
    """The full benchmark on one layer's features.

    Returns:
        ``dict(map=%, ap=[% per class], chosen_cost=[per class], cv_ap=[[per class, cost]])``.
    """
    prep = normalize_features if normalize else (lambda f: np.asarray(f, dtype=np.float64))
    svms = train_svms(prep(train_feats), train_targets, costs, folds, max_iter, n_jobs,
                      class_names)
    aps = class_aps(svms['models'], prep(test_feats), test_targets, class_names)
    return dict(map=float(100 * aps.mean()), ap=(100 * aps).tolist(),
                chosen_cost=svms['chosen_cost'], cv_ap=svms['cv_ap'].tolist())


def low_shot_sample(targets, k: int, seed: int,
                    class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Low-shot targets over the *train* rows: per class ``k`` positives (1) and ``(C-1) * k``
    negatives (0) of that class, every other entry -1 (not drawn).

    Sample ``seed`` at ``k`` shots draws with ``numpy.random.default_rng([seed, k])``, so every
    (sample, k) is independent and reproducible, as the reference's files are.
    """
    targets = np.asarray(targets)
    if k < 1:
        raise ValueError(f'low-shot k must be >= 1, got {k}')
    num_classes = targets.shape[1]
    rng = np.random.default_rng([seed, k])
    out = np.full(targets.shape, IGNORE, dtype=np.int8)
    for symbol, num in ((1, k), (0, (num_classes - 1) * k)):
        for c in range(num_classes):
            rows = np.flatnonzero(targets[:, c] == symbol)
            if len(rows) < num:
                kind = 'positive' if symbol == 1 else 'negative'
                raise ValueError(
                    f'low-shot k={k}: class {_class_name(c, class_names)} has {len(rows)} '
                    f'{kind} training samples, {num} are needed (lower the k values, e.g. '
                    f'--k-values up to {k // 2 or 1}, or use more training images)')
            out[rng.choice(rows, size=num, replace=False), c] = symbol
    return out


def low_shot_svm(train_feats, train_targets, test_feats, test_targets,
                 k_values: Sequence[int] = LOW_SHOT_K,
                 samples: Sequence[int] = LOW_SHOT_SAMPLES,
                 costs: Sequence[float] = REFERENCE_COSTS, normalize: bool = True,
                 max_iter: int = MAX_ITER,
                 class_names: Optional[Sequence[str]] = None) -> dict:
    """Low-shot SVM mAP of one layer's features for every k, sample and cost.

    Returns:
        ``dict(k={k: dict(mean, min, max, std, cost)}, table={k: [[mAP % per cost] per
        sample]})``: per ``k`` the statistics over the samples at the cost with the best mean.
    """
    prep = normalize_features if normalize else (lambda f: np.asarray(f, dtype=np.float64))
    train_feats, test_feats = prep(train_feats), prep(test_feats)
    if not costs:
        raise ValueError('give at least one SVM cost')
    test_targets = np.asarray(test_targets)
    summary, table = {}, {}
    with quiet_convergence():
        for k in k_values:
            rows = []
            for seed in samples:
                sample = low_shot_sample(train_targets, k, seed, class_names)
                per_cost = np.zeros((len(costs), sample.shape[1]))
                for c in range(sample.shape[1]):
                    keep = sample[:, c] != IGNORE
                    for j, cost in enumerate(costs):
                        model = make_svm(cost, max_iter).fit(train_feats[keep],
                                                             _binary(sample[keep, c]))
                        per_cost[j, c] = class_ap(model, test_feats, test_targets[:, c],
                                                  _class_name(c, class_names))
                rows.append((100 * per_cost.mean(axis=1)).tolist())
            arr = np.array(rows)  # samples x costs
            best = int(np.argmax(arr.mean(axis=0)))
            summary[int(k)] = dict(mean=float(arr[:, best].mean()), min=float(arr[:, best].min()),
                                   max=float(arr[:, best].max()), std=float(arr[:, best].std()),
                                   cost=float(costs[best]))
            table[int(k)] = rows
    return dict(k=summary, table=table)


def format_low_shot_table(results: Dict[str, Dict[str, dict]], k_values: Sequence[int]) -> str:
    """Markdown table: one row per checkpoint and layer, one column per k (mean +- std mAP)."""
    lines = ['| checkpoint | layer | ' + ' | '.join(f'k={k}' for k in k_values) + ' |',
             '|---|---|' + '---:|' * len(k_values)]
    for name, per_stage in results.items():
        for stage, res in per_stage.items():
            cells = [f'{res["k"][k]["mean"]:.2f} +- {res["k"][k]["std"]:.2f}'
                     if k in res['k'] else '-' for k in k_values]
            lines.append(f'| {name} | {stage} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_low_shot(results: Dict[str, Dict[str, dict]], path: str,
                  title: str = 'low-shot SVM') -> str:
    """x = samples per class (log 2), y = mean test mAP (%) with min-max band; one line per
    checkpoint (colour) and layer (line style)."""
    from .plots import series_style
    fig = new_figure((7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, per_stage) in enumerate(results.items()):
        for j, (stage, res) in enumerate(per_stage.items()):
            ks: List[int] = sorted(res['k'])
            mean = [res['k'][k]['mean'] for k in ks]
            ax.plot(ks, mean, series_style(j), marker='os^D'[j % 4], color=f'C{i % 10}',
                    label=f'{name} ({stage})')
            ax.fill_between(ks, [res['k'][k]['min'] for k in ks],
                            [res['k'][k]['max'] for k in ks], color=f'C{i % 10}', alpha=0.1)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('positive samples per class (k)')
    ax.set_ylabel('test mAP (%)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
    return save_figure(fig, path)
