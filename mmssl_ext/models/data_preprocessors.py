"""Our data preprocessors, all on mmpretrain's :class:`SelfSupDataPreprocessor`.

* :class:`PatchViewDataPreprocessor`: multi-view input where a view is a stack of patches
  (PIRL, Jigsaw);
* :class:`ColorizationDataPreprocessor`: Lab lightness input and ab target (Colorization);
* :class:`CMCDataPreprocessor`: Lab channel groups as views (CMC);
* :class:`SobelDataPreprocessor`: Sobel-filtered grey input (DeepCluster, ODC).
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor

from mmssl_ext.models.utils.lab import packed_images_to_lab
from mmssl_ext.registry import MODELS

__all__ = ['CMCDataPreprocessor', 'ColorizationDataPreprocessor', 'PatchViewDataPreprocessor',
           'SobelDataPreprocessor', 'CMC_LAB_MEAN', 'CMC_LAB_STD']

# Normalisation of CMC's reference code (RGB2Lab + Normalize): the centre and half-range of each
# Lab channel over the sRGB gamut, L in [0, 100], a in [-86.183, 98.233], b in [-107.857, 94.478].
CMC_LAB_MEAN = (50.0, (-86.183 + 98.233) / 2, (-107.857 + 94.478) / 2)
CMC_LAB_STD = (50.0, (86.183 + 98.233) / 2, (107.857 + 94.478) / 2)


@MODELS.register_module()
class PatchViewDataPreprocessor(SelfSupDataPreprocessor):
    """:class:`SelfSupDataPreprocessor` that also accepts patch views ``B x N x C x h x w``.

    PIRL's (and Jigsaw's) transformed view is a stack of ``N`` patches per image.  mmpretrain's
    preprocessor would index the patch axis as if it were the channel axis; here every 5-D view
    is flattened to ``(B*N) x C x h x w`` for the BGR->RGB swap and the normalisation, then
    reshaped back.  4-D views are processed exactly as mmpretrain does.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        if not isinstance(data, dict):
            raise TypeError('use default_collate in the dataloader (got '
                            f'{type(data).__name__}, expected a dict)')
        inputs, data_samples = self.cast_data([data['inputs'], data.get('data_samples')])
        views = inputs if isinstance(inputs, list) else [inputs]
        out = [self._process(v) for v in views]
        return dict(inputs=out if isinstance(inputs, list) else out[0],
                    data_samples=data_samples)

    def _process(self, view: torch.Tensor) -> torch.Tensor:
        shape: Optional[torch.Size] = None
        if view.ndim == 5:
            shape = view.shape
            view = view.flatten(0, 1)
        if self._channel_conversion:
            view = view[:, [2, 1, 0], ...]
        view = view.float()
        if self._enable_normalize:
            view = (view - self.mean) / self.std
        if shape is not None:
            view = view.view(shape[0], shape[1], *view.shape[1:])
        return view


@MODELS.register_module()
class ColorizationDataPreprocessor(SelfSupDataPreprocessor):
    """Packed uint8 image batch -> normalised lightness ``L`` (and the ab target in training).

    ``B x 3 x H x W`` images in ``[0, 255]`` (BGR from ``LoadImageFromFile``: ``to_rgb=True``
    swaps them to RGB first, as mmpretrain's ``SelfSupDataPreprocessor`` does; set
    ``to_rgb=False`` for RGB input; ``B x 1 x H x W`` gray images are taken as R = G = B) ->
    sRGB in ``[0, 1]`` -> CIE Lab (``rgb_to_lab``) -> returns

    * test mode (``training=False``): ``inputs = (L - l_mean) / l_std``, a plain
      ``B x 1 x H x W`` tensor: what the backbone sees, so kNN / probes / ``extract_features``
      work with a Colorization config unchanged;
    * training mode: ``inputs = [(L - l_mean) / l_std, ab]`` with the raw ``B x 2 x H x W`` ab
      target (``a``, ``b`` in Lab units) for :class:`Colorization`.

    The defaults ``l_mean = l_std = 50`` map ``L`` in ``[0, 100]`` to ``[-1, 1]``.
    """

    def __init__(self, l_mean: float = 50.0, l_std: float = 50.0, to_rgb: bool = True,
                 non_blocking: Optional[bool] = False):
        super().__init__(to_rgb=to_rgb, non_blocking=non_blocking)
        if not l_std > 0:
            raise ValueError(f'ColorizationDataPreprocessor: l_std must be > 0, got {l_std}')
        self.l_mean = float(l_mean)
        self.l_std = float(l_std)

    def forward(self, data: dict, training: bool = False) -> dict:
        if not isinstance(data, dict):
            raise TypeError('use default_collate in the dataloader (got '
                            f'{type(data).__name__}, expected a dict)')
        inputs, data_samples = self.cast_data([data['inputs'], data.get('data_samples')])
        lab = packed_images_to_lab(inputs, self._channel_conversion,
                                   'ColorizationDataPreprocessor')
        lightness = (lab[:, :1] - self.l_mean) / self.l_std
        if training:
            return dict(inputs=[lightness, lab[:, 1:]], data_samples=data_samples)
        return dict(inputs=lightness, data_samples=data_samples)


@MODELS.register_module()
class CMCDataPreprocessor(SelfSupDataPreprocessor):
    """Packed uint8 image batch -> normalised CIE Lab -> one tensor per view (channel groups).

    ``B x 3 x H x W`` images in ``[0, 255]`` (BGR from ``LoadImageFromFile``; ``to_rgb=True``
    swaps them to RGB first, as mmpretrain's ``SelfSupDataPreprocessor`` does; ``B x 1 x H x W``
    gray images are taken as R = G = B) -> sRGB in ``[0, 1]`` -> Lab (``rgb_to_lab``) ->
    ``(Lab - lab_mean) / lab_std`` per channel -> view ``m`` is channels ``view_channels[m]``
    of input copy ``view_inputs[m]``:

    * training mode: ``inputs = [view_0, ..., view_{M-1}]`` for :class:`CMC`;
    * test mode (``training=False``): ``inputs = view_0`` only, a plain tensor: what the first
      encoder (``model.backbone``) sees, so kNN / probes / ``extract_features`` work with a CMC
      config unchanged.

    The default is the paper's L / ab split of one crop (``view_channels=((0,), (1, 2))``).
    ``view_inputs`` selects, per view, which augmented copy of the image the view is taken from
    when the pipeline packs several (mmpretrain's ``MultiView``: ``inputs`` is then a list): e.g.
    ``view_channels=((0,), (0,)), view_inputs=(0, 1)`` gives two views = the L channel of two
    different crops (a split that also works on gray images).  Default: every view from copy 0.

    Args:
        view_channels: one channel group (indices into L, a, b) per view, ``M >= 2`` groups.
        view_inputs: per view, the index of the image copy (``None``: all 0).
        lab_mean, lab_std: per-channel normalisation of L, a, b (CMC's defaults).
        to_rgb: swap BGR input to RGB (``False`` for RGB input).
    """

    def __init__(self,
                 view_channels: Sequence[Sequence[int]] = ((0, ), (1, 2)),
                 view_inputs: Optional[Sequence[int]] = None,
                 lab_mean: Sequence[float] = CMC_LAB_MEAN,
                 lab_std: Sequence[float] = CMC_LAB_STD,
                 to_rgb: bool = True,
                 non_blocking: Optional[bool] = False):
        super().__init__(to_rgb=to_rgb, non_blocking=non_blocking)
        groups = [tuple(int(c) for c in g) for g in view_channels]
        if len(groups) < 2:
            raise ValueError(f'CMCDataPreprocessor: view_channels needs at least 2 views, got '
                             f'{view_channels!r}')
        for g in groups:
            if not g or any(c not in (0, 1, 2) for c in g) or len(set(g)) != len(g):
                raise ValueError('CMCDataPreprocessor: each view_channels group must be a '
                                 'non-empty list of distinct Lab channel indices in {0, 1, 2}, '
                                 f'got {list(g)} in view_channels={view_channels!r}')
        if view_inputs is None:
            view_inputs = (0, ) * len(groups)
        view_inputs = tuple(int(i) for i in view_inputs)
        if len(view_inputs) != len(groups) or any(i < 0 for i in view_inputs):
            raise ValueError(f'CMCDataPreprocessor: view_inputs={view_inputs!r} must give one '
                             f'non-negative input index per view ({len(groups)} views)')
        if len(lab_mean) != 3 or len(lab_std) != 3 or not all(s > 0 for s in lab_std):
            raise ValueError(f'CMCDataPreprocessor: lab_mean / lab_std need 3 values each (std '
                             f'> 0), got {lab_mean!r} / {lab_std!r}')
        self.view_channels = groups
        self.view_inputs = view_inputs
        self.register_buffer('lab_mean', torch.tensor(lab_mean, dtype=torch.float32).view(
            1, 3, 1, 1), persistent=False)
        self.register_buffer('lab_std', torch.tensor(lab_std, dtype=torch.float32).view(
            1, 3, 1, 1), persistent=False)

    @property
    def num_views(self) -> int:
        return len(self.view_channels)

    def _lab(self, img: torch.Tensor) -> torch.Tensor:
        lab = packed_images_to_lab(img, self._channel_conversion, 'CMCDataPreprocessor')
        return (lab - self.lab_mean) / self.lab_std

    def forward(self, data: dict, training: bool = False) -> dict:
        if not isinstance(data, dict):
            raise TypeError('use default_collate in the dataloader (got '
                            f'{type(data).__name__}, expected a dict)')
        inputs, data_samples = self.cast_data([data['inputs'], data.get('data_samples')])
        copies = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not training:  # the first view, from the (first) image: what model.backbone sees
            return dict(inputs=self._lab(copies[0])[:, list(self.view_channels[0])],
                        data_samples=data_samples)
        if max(self.view_inputs) >= len(copies):
            raise ValueError(
                f'CMCDataPreprocessor: view_inputs={self.view_inputs} needs '
                f'{max(self.view_inputs) + 1} augmented copies per sample (MultiView in the '
                f'pipeline), got {len(copies)}')
        labs = {i: self._lab(copies[i]) for i in sorted(set(self.view_inputs))}
        views = [labs[i][:, list(ch)] for i, ch in zip(self.view_inputs, self.view_channels)]
        return dict(inputs=views, data_samples=data_samples)


@MODELS.register_module()
class SobelDataPreprocessor(SelfSupDataPreprocessor):
    """``SelfSupDataPreprocessor`` followed by DeepCluster's fixed Sobel filtering.

    DeepCluster feeds its convnet the gradients of the grey image instead of the colour image
    (colour is a shortcut for k-means): after normalisation, ``gray = mean over RGB`` (the
    original 1x1 conv with weights 1/3), then the horizontal and vertical Sobel filters give
    2 channels (backbone ``in_channels=2``).  Applied in training AND test mode, so feature
    extraction, ``tools/knn_eval.py`` and transfer see the same input as training.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        sobel = torch.tensor([[1., 0., -1.], [2., 0., -2.], [1., 0., -1.]])
        self.register_buffer('sobel_kernel', torch.stack([sobel, sobel.t()]).unsqueeze(1),
                             persistent=False)

    def sobel(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f'SobelDataPreprocessor expects B x 3 x H x W (or 1-channel) images, '
                             f'got shape {tuple(x.shape)}')
        gray = x.mean(dim=1, keepdim=True)
        return F.conv2d(gray, self.sobel_kernel.to(x.dtype), padding=1)

    def forward(self, data: dict, training: bool = False) -> dict:
        out = super().forward(data, training)
        inputs = out['inputs']
        out['inputs'] = ([self.sobel(v) for v in inputs] if isinstance(inputs, list)
                         else self.sobel(inputs))
        return out
