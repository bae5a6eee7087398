"""Per-layer probe of a ResNet-family backbone (Goyal et al. 2019, "Scaling and benchmarking
self-supervised visual representation learning"; the per-layer tables of PIRL and ClusterFit).

Stages: ``stem`` (the stem's output after its max-pool: ``conv1 -> norm1 -> relu -> maxpool``, or
``stem -> maxpool`` with ``deep_stem``) and ``res2`` ... ``res5`` (the outputs of the four res
layers).  Every stage's map ``C x H x W`` is average-pooled to ``s x s`` and flattened, with ``s``
the largest size ``<= min(H, W)`` such that ``C * s * s <= max_dim`` (``s = 1`` when even ``C``
exceeds ``max_dim``).  Goyal et al. resize every layer to about 9k dimensions; the default
``max_dim = 4096`` keeps the five stages of a ResNet-50 at 224 px at 2k-4k dimensions each
(stem 64x8x8, res2 256x4x4, res3 512x2x2, res4 1024x2x2, res5 2048x1x1), which halves the memory
of the probe-train features and changes the ranking of the layers little.

Probes per stage:

* linear: multinomial logistic regression on features standardised with the probe-train
  statistics; full-batch L-BFGS (strong Wolfe line search) from a zero initialisation on
  ``mean cross-entropy + weight_decay / 2 * ||W||^2`` (bias unregularised).  The objective is
  strictly convex, so the result is deterministic (and equals sklearn's ``LogisticRegression``
  with ``C = 1 / (weight_decay * N)`` at convergence);
* kNN: weighted kNN (:func:`~mmssl_ext.evaluation.knn.knn_evaluate`) on L2-normalised features,
  ``k = 20``, ``T = 0.07``.

Example:
    >>> feats, labels, layout = extract_stage_features(model, loader)  # one pass, all stages
    >>> layout['res4']
    {'channels': 128, 'height': 2, 'width': 2, 'size': 2, 'dim': 512}
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import is_model_wrapper

from .features import extract_features
from .knn import knn_evaluate
from .plots import new_figure, save_figure, series_style

METHODS = ('linear', 'knn')


def _stem_output_module(backbone: nn.Module) -> Optional[nn.Module]:
    """The module whose output is the stem's output (the max-pool where there is one)."""
    if isinstance(getattr(backbone, 'maxpool', None), nn.Module):
        return backbone.maxpool
    if getattr(backbone, 'deep_stem', False) and \
            isinstance(getattr(backbone, 'stem', None), nn.Module):
        return backbone.stem
    relu = getattr(backbone, 'relu', None)  # ResNet_CIFAR: conv1 -> norm1 -> relu, no pool
    return relu if isinstance(relu, nn.Module) else None


def check_resnet_like(backbone: nn.Module) -> None:
    """Raise ``TypeError`` unless ``backbone`` is a ResNet-family backbone of mmpretrain."""
    res_layers = getattr(backbone, 'res_layers', None)
    if not (isinstance(res_layers, (list, tuple)) and res_layers
            and hasattr(backbone, 'out_indices') and _stem_output_module(backbone) is not None):
        raise TypeError(
            f'the per-layer probe needs a ResNet-family backbone (a stem plus res_layers, as '
            f'mmpretrain ResNet, ResNetV1c/V1d, ResNeXt, SEResNet); got '
            f'{type(backbone).__name__}')


def stage_names(backbone: nn.Module) -> List[str]:
    """``['stem', 'res2', ...]``: the stem and one name per res layer (res2..res5 for 4)."""
    check_resnet_like(backbone)
    return ['stem'] + [f'res{i + 2}' for i in range(len(backbone.res_layers))]


class ResNetStages(nn.Module):
    """Run a ResNet-family backbone once and return the maps of all its stages.

    The stem's output is caught by a forward hook on its max-pool; the res layers' outputs come
    from the backbone itself with ``out_indices`` set to every res layer for the call (restored
    afterwards), so the backbone's own forward (deep stem, ``avg_down``, plugins) is what runs.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.names = stage_names(backbone)
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        captured = []
        handle = _stem_output_module(self.backbone).register_forward_hook(
            lambda module, inputs, output: captured.append(output))
        old = self.backbone.out_indices
        self.backbone.out_indices = tuple(range(len(self.backbone.res_layers)))
        try:
            outs = self.backbone(x)
        finally:
            handle.remove()
            self.backbone.out_indices = old
        if len(captured) != 1 or len(outs) != len(self.names) - 1:
            raise RuntimeError(f'{type(self.backbone).__name__}: expected one stem output and '
                               f'{len(self.names) - 1} res-layer outputs, got {len(captured)} '
                               f'and {len(outs)}')
        return [captured[0], *outs]


def pooled_size(channels: int, height: int, width: int, max_dim: int = 4096) -> int:
    """The largest ``s <= min(height, width)`` with ``channels * s * s <= max_dim`` (at least 1)."""
    if max_dim < 1:
        raise ValueError(f'max_dim must be >= 1, got {max_dim}')
    s = math.isqrt(max_dim // channels) if channels <= max_dim else 1
    return max(1, min(s, height, width))


def pool_stage(feat: torch.Tensor, max_dim: int = 4096) -> torch.Tensor:
    """Average-pool a ``B x C x H x W`` map to ``s x s`` (:func:`pooled_size`) and flatten."""
    s = pooled_size(feat.shape[1], feat.shape[2], feat.shape[3], max_dim)
    return F.adaptive_avg_pool2d(feat, s).flatten(1)


def select_stages(backbone: nn.Module, stages: Optional[Sequence[str]] = None) -> List[str]:
    """``stages`` checked against the backbone's stage names (all of them when None)."""
    names = stage_names(backbone)
    if not stages:
        return names
    unknown = [s for s in stages if s not in names]
    if unknown:
        raise ValueError(f'unknown stage name(s) {unknown}; this backbone has {names}')
    return [s for s in names if s in stages]


def check_pool_ops(pool_ops: Optional[Dict[str, Sequence[int]]],
                   names: Sequence[str]) -> Dict[str, Tuple[int, int, int]]:
    """``{stage: (kernel, stride, padding)}`` checked: known stages, three integers each."""
    out = {}
    for name, op in (pool_ops or {}).items():
        if name not in names:
            raise ValueError(f'pool_ops names stage {name!r}; this backbone has {list(names)}')
        if len(op) != 3 or not all(isinstance(v, int) and v >= 0 for v in op) or \
                min(op[:2]) < 1:
            raise ValueError(f'pool_ops[{name!r}] = {op!r}: give (kernel, stride, padding), '
                             f'three integers, kernel and stride >= 1, e.g. (16, 8, 0)')
        out[name] = tuple(op)
    return out


def pool_fixed(fmap: torch.Tensor, name: str, op: Sequence[int]) -> torch.Tensor:
    """``AvgPool2d(kernel, stride, padding)`` of a stage map (VISSL's per-layer pooling)."""
    kernel, stride, padding = op
    h, w = fmap.shape[2:]
    if kernel > min(h, w) + 2 * padding or padding > kernel // 2:
        raise ValueError(f'pool_ops[{name!r}] = {tuple(op)} does not fit the {h} x {w} map of '
                         f'{name} (kernel <= size + 2 * padding, padding <= kernel / 2); '
                         f'choose the pooling for this input size or drop it from pool_ops')
    return F.avg_pool2d(fmap, kernel, stride, padding)


class PooledStages(nn.Module):
    """A 'backbone' for :func:`extract_features`: all selected stages, pooled, concatenated.

    Its output is a 1-tuple ``(B x sum(dims), )``; :attr:`layout` describes each stage's slice.
    """

    def __init__(self, backbone: nn.Module, stages: Optional[Sequence[str]] = None,
                 max_dim: int = 4096, pool_ops: Optional[Dict[str, Sequence[int]]] = None):
        super().__init__()
        self.stages = ResNetStages(backbone)
        self.selected = select_stages(backbone, stages)
        self.max_dim = max_dim
        self.pool_ops = check_pool_ops(pool_ops, self.stages.names)
        self.layout: Dict[str, dict] = {}

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        feats, layout = [], {}
        for name, fmap in zip(self.stages.names, self.stages(x)):
            if name not in self.selected:
                continue
            c, h, w = fmap.shape[1:]
            if name in self.pool_ops:
                pooled = pool_fixed(fmap, name, self.pool_ops[name])
            else:
                pooled = F.adaptive_avg_pool2d(fmap, pooled_size(c, h, w, self.max_dim))
            layout[name] = dict(channels=c, height=h, width=w, size=pooled.shape[2],
                                dim=pooled[0].numel())
            feats.append(pooled.flatten(1))
        if self.layout and self.layout != layout:
            raise ValueError(f'stage shapes changed between batches ({self.layout} then '
                             f'{layout}): the probe needs images of one size')
        self.layout = layout
        return (torch.cat(feats, dim=1), )


def extract_stage_features(model: nn.Module, dataloader,
                           stages: Optional[Sequence[str]] = None, max_dim: int = 4096,
                           progress: bool = True,
                           pool_ops: Optional[Dict[str, Sequence[int]]] = None
                           ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, Dict[str, dict]]:
    """Pooled features of every selected stage, in one pass over ``dataloader``.

    ``pool_ops`` (``{stage: (kernel, stride, padding)}``) pools the named stages with a fixed
    ``AvgPool2d`` instead of the ``max_dim`` rule.

    Returns:
        ``({stage: N x D_stage}, labels N, {stage: dict(channels, height, width, size, dim)})``;
        features are pooled (:func:`pool_stage`), not normalised.
    """
    backbone = (model.module if is_model_wrapper(model) else model).backbone
    pooled = PooledStages(backbone, stages, max_dim, pool_ops)
    feats, labels = extract_features(model, dataloader, normalize=False, backbone=pooled,
                                     progress=progress)
    out, start = {}, 0
    for name, info in pooled.layout.items():
        out[name] = feats[:, start:start + info['dim']]
        start += info['dim']
    return out, labels, dict(pooled.layout)


def standardize(train: torch.Tensor, test: Optional[torch.Tensor] = None,
                eps: float = 1e-6) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Zero mean, unit variance per dimension with the *train* statistics (constant -> 0)."""
    mean = train.mean(dim=0, keepdim=True)
    std = train.std(dim=0, unbiased=False, keepdim=True).clamp_min(eps)
    return (train - mean) / std, (None if test is None else (test - mean) / std)


def train_linear_classifier(feats: torch.Tensor, labels: torch.Tensor,
                            num_classes: Optional[int] = None, weight_decay: float = 1e-4,
                            max_iter: int = 200) -> nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS (see the module docstring).

    Minimises ``mean CE(W x + b, y) + weight_decay / 2 * ||W||_F^2`` from ``W = 0, b = 0``.
    """
    feats = feats.float()
    labels = labels.long().flatten()
    if len(feats) != len(labels) or len(feats) == 0:
        raise ValueError(f'{len(feats)} features and {len(labels)} labels')
    num_classes = num_classes or int(labels.max()) + 1
    linear = nn.Linear(feats.shape[1], num_classes)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9,
                            line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(feats), labels) + \
            0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return linear.requires_grad_(False)


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in %."""
    return 100.0 * (logits.argmax(dim=1) == labels.flatten()).float().mean().item()


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor,
                 test_feats: torch.Tensor, test_labels: torch.Tensor,
                 weight_decay: float = 1e-4, max_iter: int = 200,
                 num_classes: Optional[int] = None) -> float:
    """Test top-1 (%) of a logistic regression trained on standardised train features."""
    train_s, test_s = standardize(train_feats.float(), test_feats.float())
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    clf = train_linear_classifier(train_s, train_labels, num_classes, weight_decay, max_iter)
    return top1(clf(test_s), test_labels.long())


def knn_probe(train_feats: torch.Tensor, train_labels: torch.Tensor,
              test_feats: torch.Tensor, test_labels: torch.Tensor,
              k: int = 20, temperature: float = 0.07) -> float:
    """Weighted-kNN top-1 (%) on L2-normalised features (``k`` capped at the train size)."""
    k = min(k, len(train_feats))
    res = knn_evaluate(F.normalize(train_feats.float(), dim=1), train_labels,
                       F.normalize(test_feats.float(), dim=1), test_labels,
                       ks=(k, ), temperature=temperature, topk=(1, ))
    return res[f'k{k}_top1']


def probe_stages(train_feats: Dict[str, torch.Tensor], train_labels: torch.Tensor,
                 test_feats: Dict[str, torch.Tensor], test_labels: torch.Tensor,
                 method: str = 'both', k: int = 20, temperature: float = 0.07,
                 weight_decay: float = 1e-4, max_iter: int = 200
                 ) -> Dict[str, Dict[str, float]]:
    """``{method: {stage: top1}}`` for ``method`` in ``'linear'``, ``'knn'``, ``'both'``."""
    methods = check_method(method)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    out = {m: {} for m in methods}
    for stage in train_feats:
        if 'linear' in methods:
            out['linear'][stage] = linear_probe(train_feats[stage], train_labels,
                                                test_feats[stage], test_labels, weight_decay,
                                                max_iter, num_classes)
        if 'knn' in methods:
            out['knn'][stage] = knn_probe(train_feats[stage], train_labels, test_feats[stage],
                                          test_labels, k, temperature)
    return out


def check_method(method: str) -> Tuple[str, ...]:
    if method == 'both':
        return METHODS
    if method not in METHODS:
        raise ValueError(f"method must be 'linear', 'knn' or 'both', got {method!r}")
    return (method, )


def format_table(results: Dict[str, Dict[str, Dict[str, float]]],
                 stages: Sequence[str]) -> str:
    """Markdown table: one row per checkpoint and method, one column per stage (top-1 %)."""
    lines = ['| checkpoint | probe | ' + ' | '.join(stages) + ' |',
             '|---|---|' + '---:|' * len(stages)]
    for name, per_method in results.items():
        for method, accs in per_method.items():
            cells = [f'{accs[s]:.2f}' if s in accs else '-' for s in stages]
            lines.append(f'| {name} | {method} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_layer_probe(results: Dict[str, Dict[str, Dict[str, float]]], stages: Sequence[str],
                     path: str, title: str = 'per-layer probe',
                     ylabel: str = 'top-1 accuracy (%)') -> str:
    """x = stage, y = top-1 % (or ``ylabel``), one line per checkpoint (colour) and method
    (line style)."""
    fig = new_figure((7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(len(stages)))
    values = [v for per_method in results.values() for accs in per_method.values()
              for v in accs.values()]
    for i, (name, per_method) in enumerate(results.items()):
        colour = f'C{i % 10}'
        for j, (method, accs) in enumerate(per_method.items()):
            xs = [xi for xi, s in zip(x, stages) if s in accs]
            ys = [accs[s] for s in stages if s in accs]
            ax.plot(xs, ys, series_style(j), marker='os^D'[j % 4], color=colour,
                    label=f'{name} ({method})')
    ax.set_xticks(x)
    ax.set_xticklabels(list(stages))
    if values:
        ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values)) + 5)
    ax.set_xlabel('stage')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
    return save_figure(fig, path)
