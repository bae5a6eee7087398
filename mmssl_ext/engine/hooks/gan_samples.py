"""``GANSamplesHook``: a grid of a generator's samples from a fixed ``z``, every N iterations."""
import math
import os
import os.path as osp
from typing import Optional

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssl_ext.registry import HOOKS


def image_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> np.ndarray:
    """``N x C x H x W`` images in ``[-1, 1]`` -> one ``uint8`` RGB grid of ``nrow`` columns::

        rows = ceil(N / nrow);   height = rows * H + (rows + 1) * padding
                                 width  = nrow * W + (nrow + 1) * padding

    (black padding; a grey image, ``C = 1``, is repeated to RGB)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f'image_grid: expected N x (1 or 3) x H x W images, got '
                         f'{tuple(images.shape)}')
    n, _, h, w = images.shape
    rows = math.ceil(n / nrow)
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).cpu().numpy()
    grid = np.zeros((rows * h + (rows + 1) * padding, nrow * w + (nrow + 1) * padding, 3),
                    dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top:top + h, left:left + w] = pixels[i]
    return grid


@HOOKS.register_module()
class GANSamplesHook(Hook):
    """Write ``G(z)`` for a fixed ``z`` as an image grid every ``interval`` iterations and after
    the last one: ``<work_dir>/<out_dir>/iter_<N>.png`` and the visualizer's ``add_image``
    (``gan_samples``, step N), so a person can watch the generator learn.

    ``z``: ``num_samples`` rows drawn once from a generator seeded with ``seed`` (the global
    random state is not touched).  The model provides ``latent_dim`` and ``generate(z)``
    (images in ``[-1, 1]``, the generator in eval mode: no BatchNorm statistics or
    spectral-norm vectors change), so the hook leaves an exactly resumed run exact.  Under DDP
    rank 0 writes.

    Args:
        interval (int): Iterations between grids. Defaults to 500.
        num_samples (int): Images in a grid. Defaults to 64.
        nrow (int): Images per grid row. Defaults to 8.
        seed (int): Seed of the fixed ``z``. Defaults to 0.
        out_dir (str): Folder under the work directory. Defaults to ``'gan_samples'``.
        padding (int): Pixels between images. Defaults to 2.
    """
    priority = 'LOW'

    def __init__(self, interval: int = 500, num_samples: int = 64, nrow: int = 8,
                 seed: int = 0, out_dir: str = 'gan_samples', padding: int = 2) -> None:
        for key, value in dict(interval=interval, num_samples=num_samples, nrow=nrow).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'GANSamplesHook: {key} must be a positive int, got {value!r}')
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f'GANSamplesHook: padding must be an int >= 0, got {padding!r}')
        self.interval = interval
        self.num_samples = num_samples
        self.nrow = nrow
        self.seed = seed
        self.out_dir = out_dir
        self.padding = padding
        self.z: Optional[torch.Tensor] = None
        self.written = []

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not callable(getattr(model, 'generate', None)) or \
                not isinstance(getattr(model, 'latent_dim', None), int):
            raise TypeError(f'GANSamplesHook: {type(model).__name__} has no generate(z) / '
                            f'latent_dim; the hook is for generative models (BigBiGAN); '
                            f'remove it from custom_hooks')
        return model

    def before_train(self, runner) -> None:
        model = self._model(runner)
        g = torch.Generator().manual_seed(self.seed)
        self.z = torch.randn(self.num_samples, model.latent_dim, generator=g)

    def write(self, runner, step: int) -> Optional[str]:
        """The grid of iteration ``step`` (1-based): saved and handed to the visualizer."""
        if not is_main_process():
            return None
        grid = image_grid(self._model(runner).generate(self.z), self.nrow, self.padding)
        folder = osp.join(runner.work_dir, self.out_dir)
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, f'iter_{step}.png')
        from PIL import Image
        Image.fromarray(grid).save(path)
        runner.visualizer.add_image('gan_samples', grid, step=step)
        self.written.append(step)
        return path

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval) or self.is_last_train_iter(runner):
            self.write(runner, runner.iter + 1)
