"""How invariant a representation is to a transform: PIRL (Misra & van der Maaten 2020), Fig. 7.

For each image ``I`` and a transformed version ``I_t``, the distance
``|| v_I / |v_I| - v_It / |v_It| ||_2`` (in ``[0, 2]``) between their L2-normalised
representations; a histogram of the distances over many images shows how much of the transform a
representation keeps (0 = invariant, sqrt(2) = orthogonal).

Transforms (on raw-pixel ``C x H x W`` tensors in ``[0, 255]``, i.e. before the data
preprocessor; all randomness from an explicit ``torch.Generator``, so a seed fixes them):

* ``rotation``: ``torch.rot90`` by a random 90, 180 or 270 degrees (never 0);
* ``jigsaw``: the central ``3t x 3t`` square (``t = min(H, W) // 3``) cut into a 3x3 grid, the
  tiles put back in a random non-identity permutation (output cell ``i`` holds tile ``perm[i]``,
  row-major, as :class:`~mmssl_ext.datasets.transforms.JigsawPatches`); the border left by the
  integer tile size stays in place, so the output is a permutation of the input's pixels;
* ``augment``: a SimCLR-style view: random resized crop (area 0.2-1, aspect 3/4-4/3, back to
  ``H x W``), horizontal flip (p = 0.5), brightness and contrast factors in ``[0.6, 1.4]``
  (torchvision.transforms.v2 functional ops, parameters drawn from the generator);
* ``identity``: the image itself (a sanity check: every distance is 0).

Representations:

* ``'backbone'``: the globally average-pooled last-stage backbone feature (any model);
* ``'pirl'``: PIRL's own branches: ``v_I = f(I)`` (backbone -> ``neck``) and, for ``jigsaw``,
  ``v_It = g(patches)``: the 9 permuted tiles (resized to ``patch_size``, the size PIRL trained
  on) through the backbone -> ``transform_neck`` (:class:`JigsawProjectionNeck`), as the paper
  measures.  A rotated image goes through ``g`` when ``g`` takes images (rotation PIRL), else
  through ``f``; an ``augment`` view (an image view) goes through ``f``.

The scale to read the distances against is :func:`reference_distances`, the distance between the
representations of two *different* images: a randomly initialised network's pooled features all
point in nearly the same direction, so its distances are small for any transform (and for any
two images).  The histogram figure marks each checkpoint's mean reference distance.
"""
import math
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar

from .features import pool_feature
from .plots import new_figure, save_figure

DEFAULT_TRANSFORMS = ('rotation', 'jigsaw', 'augment')
REPRESENTATIONS = ('backbone', 'pirl')


# ----------------------------------------------------------------------------- transforms
def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high, generator=gen))


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in ``[low, high)``."""
    return int(torch.randint(low, high, (), generator=gen))


def random_permutation(n: int, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of ``range(n)`` other than the identity (``n >= 2``)."""
    if n < 2:
        raise ValueError(f'no non-identity permutation of {n} element(s)')
    while True:
        perm = torch.randperm(n, generator=gen)
        if not torch.equal(perm, torch.arange(n)):
            return perm


def rotate(img: torch.Tensor, k: int) -> torch.Tensor:
    """``img`` (``... x H x W``) rotated counter-clockwise by ``k * 90`` degrees."""
    return torch.rot90(img, k, dims=(-2, -1))


def jigsaw_cells(img: torch.Tensor, grid: int = 3
                 ) -> Tuple[torch.Tensor, Tuple[int, int, int]]:
    """The ``grid x grid`` tiles of the central square of a ``C x H x W`` image.

    Returns:
        ``(tiles grid*grid x C x t x t in row-major order, (top, left, t))``.
    """
    c, h, w = img.shape
    t = min(h, w) // grid
    if t < 1:
        raise ValueError(f'an image of {h}x{w} pixels is too small for a {grid}x{grid} grid')
    top, left = (h - grid * t) // 2, (w - grid * t) // 2
    region = img[:, top:top + grid * t, left:left + grid * t]
    tiles = region.reshape(c, grid, t, grid, t).permute(1, 3, 0, 2, 4)
    return tiles.reshape(grid * grid, c, t, t), (top, left, t)


def jigsaw_tiles(img: torch.Tensor, perm: torch.Tensor, grid: int = 3) -> torch.Tensor:
    """The tiles in permuted order: ``out[i] = tile[perm[i]]`` (``grid*grid x C x t x t``)."""
    tiles, _ = jigsaw_cells(img, grid)
    return tiles[perm]


def jigsaw_image(img: torch.Tensor, perm: torch.Tensor, grid: int = 3) -> torch.Tensor:
    """``img`` with its central grid's tiles reassembled in the order ``perm``."""
    tiles, (top, left, t) = jigsaw_cells(img, grid)
    c = img.shape[0]
    region = tiles[perm].reshape(grid, grid, c, t, t).permute(2, 0, 3, 1, 4)
    out = img.clone()
    out[:, top:top + grid * t, left:left + grid * t] = region.reshape(c, grid * t, grid * t)
    return out


def random_resized_crop_params(height: int, width: int, gen: torch.Generator,
                               scale: Tuple[float, float] = (0.2, 1.0),
                               ratio: Tuple[float, float] = (3 / 4, 4 / 3)
                               ) -> Tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop, as torchvision's ``RandomResizedCrop``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(gen, *scale)
        aspect = math.exp(_uniform(gen, *log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return _randint(gen, 0, height - h + 1), _randint(gen, 0, width - w + 1), h, w
    # fallback: the central crop of the closest allowed aspect ratio
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def identity_view(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return img


def rotation_view(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rotation by a random non-zero multiple of 90 degrees."""
    return rotate(img, _randint(gen, 1, 4))


def jigsaw_view(img: torch.Tensor, gen: torch.Generator, grid: int = 3) -> torch.Tensor:
    """The image with its 3x3 tiles in a random non-identity order."""
    return jigsaw_image(img, random_permutation(grid * grid, gen), grid)


def jigsaw_patch_view(img: torch.Tensor, gen: torch.Generator, grid: int = 3,
                      patch_size: Optional[int] = None) -> torch.Tensor:
    """The permuted tiles (``grid*grid x C x p x p``, resized to ``patch_size`` if given).

    Draws the same permutation as :func:`jigsaw_view` from the same generator state.
    """
    tiles = jigsaw_tiles(img, random_permutation(grid * grid, gen), grid)
    if patch_size and patch_size != tiles.shape[-1]:
        tiles = F.interpolate(tiles, size=(patch_size, patch_size), mode='bilinear',
                              align_corners=False, antialias=patch_size < tiles.shape[-1])
    return tiles


def augment_view(img: torch.Tensor, gen: torch.Generator,
                 scale: Tuple[float, float] = (0.2, 1.0), flip_prob: float = 0.5,
                 brightness: float = 0.4, contrast: float = 0.4) -> torch.Tensor:
    """A SimCLR-style view: random resized crop, flip, brightness and contrast jitter."""
    from torchvision.transforms.v2 import functional as TF
    c, h, w = img.shape
    x = img.float() / 255.0
    top, left, ch, cw = random_resized_crop_params(h, w, gen, scale)
    x = TF.resized_crop(x, top, left, ch, cw, size=[h, w], antialias=True)
    if _uniform(gen, 0, 1) < flip_prob:
        x = TF.horizontal_flip(x)
    x = TF.adjust_brightness(x, _uniform(gen, 1 - brightness, 1 + brightness))
    x = TF.adjust_contrast(x, _uniform(gen, 1 - contrast, 1 + contrast))
    return x.clamp(0, 1) * 255.0


VIEWS: Dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = dict(
    identity=identity_view, rotation=rotation_view, jigsaw=jigsaw_view, augment=augment_view)


def check_transforms(transforms: Optional[Sequence[str]]) -> List[str]:
    transforms = list(transforms or DEFAULT_TRANSFORMS)
    unknown = [t for t in transforms if t not in VIEWS]
    if unknown:
        raise ValueError(f'unknown transform(s) {unknown}; choose from {sorted(VIEWS)}')
    return transforms


# ----------------------------------------------------------------------------- representations
def preprocess(model: nn.Module, imgs: torch.Tensor) -> torch.Tensor:
    """The model's data preprocessor (BGR->RGB, normalisation) on a ``B x C x H x W`` batch."""
    return model.data_preprocessor(dict(inputs=imgs, data_samples=None), False)['inputs']


def backbone_embedding(model: nn.Module, imgs: torch.Tensor) -> torch.Tensor:
    """L2-normalised, globally average-pooled last-stage backbone feature of raw images."""
    return F.normalize(pool_feature(model.backbone(preprocess(model, imgs))).float(), dim=1)


def is_pirl(model: nn.Module) -> bool:
    return all(callable(getattr(model, a, None)) for a in ('embed_image', 'embed_transformed')) \
        and isinstance(getattr(model, 'transform_neck', None), nn.Module)


def check_pirl(model: nn.Module, transform: Optional[str] = None) -> None:
    """Raise ``ValueError`` unless ``model`` is PIRL (and its ``g`` can take ``transform``)."""
    if not is_pirl(model):
        raise ValueError(f"--repr pirl needs a PIRL model (image branch f and transform branch "
                         f"g); the config builds {type(model).__name__}. Use --repr backbone")
    if transform == 'jigsaw' and not takes_patches(model):
        raise ValueError(f'--repr pirl with jigsaw: this PIRL model\'s transform branch g '
                         f'({type(model.transform_neck).__name__}) takes images, not jigsaw '
                         f'patches (a rotation PIRL); use --repr backbone for jigsaw')


def takes_patches(model: nn.Module) -> bool:
    """Whether PIRL's ``g`` is a patch projection (``JigsawProjectionNeck``-like)."""
    return hasattr(model.transform_neck, 'num_patches')


def pirl_image_embedding(model: nn.Module, imgs: torch.Tensor) -> torch.Tensor:
    """``f(v_I)`` of raw images (L2-normalised)."""
    return model.embed_image(preprocess(model, imgs)).float()


@contextmanager
def transformed_bn_as_trained(model: nn.Module) -> Iterator[None]:
    """Normalise the transformed views the way PIRL trained on them.

    With ``transformed_bn_stats=False`` (our default) PIRL's backbone normalised every patch batch
    with that batch's own statistics and never put patch statistics into the running ones, which
    describe full images.  An eval-mode forward would normalise patches with image statistics, a
    view ``g`` never saw; here the backbone's BatchNorm layers use batch statistics (running
    statistics untouched) for the duration.  With ``transformed_bn_stats=True`` the running
    statistics already cover the views and nothing changes.
    """
    if getattr(model, 'transformed_bn_stats', True):
        yield
        return
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in bns]
    for m in bns:
        m.train()
        m.track_running_stats = False  # batch statistics, running buffers left alone
    try:
        yield
    finally:
        for m, (training, track) in zip(bns, saved):
            m.train(training)
            m.track_running_stats = track


def pirl_transformed_embedding(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """``g(v_It)`` of raw images ``B x C x H x W`` or patches ``B x N x C x h x w``, with the
    backbone normalising them as in training (:func:`transformed_bn_as_trained`)."""
    if views.ndim == 5:
        b, n = views.shape[:2]
        flat = preprocess(model, views.flatten(0, 1))
        views = flat.view(b, n, *flat.shape[1:])
    else:
        views = preprocess(model, views)
    with transformed_bn_as_trained(model):
        return model.embed_transformed(views).float()


def _embed_list(fn: Callable[[torch.Tensor], torch.Tensor],
                items: List[torch.Tensor]) -> torch.Tensor:
    """``fn`` on a list of tensors; tensors of one shape go through in one batch."""
    groups: Dict[tuple, List[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(tuple(item.shape), []).append(i)
    out: List[Optional[torch.Tensor]] = [None] * len(items)
    for idx in groups.values():
        emb = fn(torch.stack([items[i] for i in idx]))
        for i, e in zip(idx, emb):
            out[i] = e
    return torch.stack(out)


def _raw_images(inputs) -> List[torch.Tensor]:
    """The batch's raw images as a list of ``C x H x W`` float tensors (first view if several)."""
    if isinstance(inputs, torch.Tensor):
        return [x.float() for x in inputs]
    if isinstance(inputs, (list, tuple)) and inputs and inputs[0].ndim == 4:
        return [x.float() for x in inputs[0]]  # multi-view pipelines: first view
    return [x.float() for x in inputs]


def _branches(model: nn.Module, representation: str, transform: Optional[str] = None
              ) -> Tuple[Callable, Callable]:
    """``(embedding of raw images, embedding of transformed views)`` for a representation."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f'representation must be one of {REPRESENTATIONS}, '
                         f'got {representation!r}')
    if representation == 'backbone':
        fn = lambda x: backbone_embedding(model, x)  # noqa: E731
        return fn, fn
    check_pirl(model, transform)
    image_fn = lambda x: pirl_image_embedding(model, x)  # noqa: E731
    if transform == 'jigsaw' or (transform == 'rotation' and not takes_patches(model)):
        return image_fn, lambda x: pirl_transformed_embedding(model, x)
    return image_fn, image_fn


@torch.no_grad()
def invariance_distances(model: nn.Module, dataloader, transform: str = 'rotation',
                         representation: str = 'backbone', seed: int = 0, grid: int = 3,
                         patch_size: Optional[int] = None,
                         progress: bool = False) -> torch.Tensor:
    """Distance between the normalised representations of each image and its transformed view.

    Args:
        model: a model with ``data_preprocessor`` and ``backbone`` (PIRL for ``'pirl'``).
        dataloader: a non-shuffled loader of raw images (e.g. the ``knn_eval`` val loader).
        transform: a key of :data:`VIEWS`.
        representation: ``'backbone'`` or ``'pirl'`` (see the module docstring).
        seed: seed of the transforms' generator; the same seed gives every model the same
            transformed views.
        patch_size: side the jigsaw tiles are resized to for ``'pirl'`` (None: tile size).

    Returns:
        ``N`` distances in ``[0, 2]``, in dataset order.
    """
    check_transforms([transform])
    if is_model_wrapper(model):
        model = model.module
    image_fn, trans_fn = _branches(model, representation, transform)
    patch_view = representation == 'pirl' and transform == 'jigsaw'
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    bar = ProgressBar(len(dataloader.dataset)) if progress else None
    dists = []
    try:
        for data in dataloader:
            imgs = _raw_images(data['inputs'])
            if patch_view:
                views = [jigsaw_patch_view(img, gen, grid, patch_size) for img in imgs]
            elif transform == 'jigsaw':
                views = [jigsaw_view(img, gen, grid) for img in imgs]
            else:
                views = [VIEWS[transform](img, gen) for img in imgs]
            v_i = _embed_list(image_fn, imgs)
            v_t = _embed_list(trans_fn, views)
            dists.append((F.normalize(v_i, dim=1) - F.normalize(v_t, dim=1)).norm(dim=1))
            if bar is not None:
                bar.update(len(imgs))
    finally:
        model.train(was_training)
    if bar is not None:
        print()
    return torch.cat(dists) if dists else torch.zeros(0)


@torch.no_grad()
def reference_distances(model: nn.Module, dataloader, representation: str = 'backbone',
                        seed: int = 0) -> torch.Tensor:
    """Distance between each image's representation and that of another, random image.

    The scale the invariance distances are read against: a representation that points every
    image in nearly the same direction (a randomly initialised network's pooled ReLU features
    share a large common component) has small distances for any transform without being
    invariant in any useful sense.  Uses the image branch (``f`` for ``'pirl'``).
    """
    if is_model_wrapper(model):
        model = model.module
    image_fn, _ = _branches(model, representation)
    was_training = model.training
    model.eval()
    try:
        emb = torch.cat([_embed_list(image_fn, _raw_images(data['inputs']))
                         for data in dataloader])
    finally:
        model.train(was_training)
    n = len(emb)
    if n < 2:
        raise ValueError('reference distances need at least 2 images')
    gen = torch.Generator().manual_seed(seed)
    partner = (torch.arange(n) + torch.randint(1, n, (n, ), generator=gen)) % n  # never itself
    emb = F.normalize(emb, dim=1)
    return (emb - emb[partner]).norm(dim=1)


def distance_stats(dists) -> Dict[str, float]:
    """``mean``, ``median``, ``std`` (population), ``min``, ``max`` and ``n`` of the distances."""
    d = np.asarray(dists, dtype=np.float64)
    if d.size == 0:
        raise ValueError('no distances')
    return dict(mean=float(d.mean()), median=float(np.median(d)), std=float(d.std()),
                min=float(d.min()), max=float(d.max()), n=int(d.size))


def format_stats(stats: Dict[str, Dict[str, Dict[str, float]]],
                 reference: Optional[Dict[str, Dict[str, float]]] = None) -> str:
    """Markdown table of ``{transform: {checkpoint: stats}}`` (plus ``{checkpoint: stats}`` of
    :func:`reference_distances` as the rows ``(other image)``)."""
    lines = ['| checkpoint | transform | mean | median | std |', '|---|---|---:|---:|---:|']
    rows = dict(stats)
    if reference:
        rows['(other image)'] = reference
    names = list(dict.fromkeys(n for per in rows.values() for n in per))
    for name in names:
        for transform, per in rows.items():
            if name in per:
                s = per[name]
                lines.append(f'| {name} | {transform} | {s["mean"]:.4f} | {s["median"]:.4f} | '
                             f'{s["std"]:.4f} |')
    return '\n'.join(lines)


def plot_distance_histograms(distances: Dict[str, Sequence[float]], path: str,
                             title: str = 'invariance', bins: int = 50,
                             reference: Optional[Dict[str, float]] = None) -> str:
    """All checkpoints' distance histograms overlaid on one figure, x in [0, 2].

    ``reference``: ``{checkpoint: mean distance between different images}``, drawn as a dashed
    vertical line in the checkpoint's colour.
    """
    fig = new_figure((7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    edges = np.linspace(0.0, 2.0, bins + 1)
    for i, (name, d) in enumerate(distances.items()):
        d = np.asarray(d, dtype=np.float64)
        weights = np.full(d.shape, 1.0 / max(len(d), 1))
        colour = f'C{i % 10}'
        ax.hist(d, bins=edges, weights=weights, color=colour, alpha=0.3)
        ax.hist(d, bins=edges, weights=weights, color=colour, histtype='step', linewidth=1.5,
                label=f'{name} (mean {d.mean():.3f})' if len(d) else name)
        if reference and name in reference:
            ax.axvline(reference[name], color=colour, linestyle='--', linewidth=1,
                       label=f'{name}: other image (mean {reference[name]:.3f})')
    ax.set_xlim(0, 2)
    ax.set_xlabel(r'$\ell_2$ distance between normalised $v_I$ and $v_{I^t}$')
    ax.set_ylabel('fraction of images')
    ax.set_title(title)
    ax.legend(fontsize='small')
    return save_figure(fig, path)
