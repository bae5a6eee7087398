"""Data preprocessor for multi-view inputs where a view may be a stack of patches."""
from typing import Optional

import torch
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor

from mmssl_ext.registry import MODELS


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
