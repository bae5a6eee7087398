"""BigBiGAN: Large Scale Adversarial Representation Learning (Donahue & Simonyan, NeurIPS 2019)."""
import contextlib
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank, get_world_size
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS

#: the optimiser of E and G, and the optimiser of D (keys of ``optim_wrapper``)
EG_KEY, D_KEY = 'generator', 'discriminator'
#: the modules each optimiser owns (``MultiOptimWrapperConstructor``'s ``modules``)
EG_MODULES, D_MODULES = ('generator', 'backbone', 'neck'), ('discriminator', )


def _unwrap(module: nn.Module) -> nn.Module:
    """The module inside a (per-sub-module) DDP wrapper."""
    return module.module if is_model_wrapper(module) else module


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """No gradient into ``module``'s parameters inside the block (restored on exit)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@MODELS.register_module()
class BigBiGAN(BaseSelfSupervisor):
    """BigBiGAN: an encoder ``E`` (backbone + ``BigBiGANEncoderNeck``), a generator ``G`` and a
    joint discriminator ``D(x, z)`` trained adversarially; the backbone is what transfers.

    Real pairs ``(x, z^ ~ E(x))`` against fake pairs ``(G(z), z ~ N(0, I))``; ``D`` scores each
    pair with ``s_x`` (image only), ``s_z`` (latent only) and ``s_xz`` (joint).  Per training
    iteration (``train_step``; ``d = disc_steps``)::

        D step (every iteration):    L_D  = sum_k mean_real h(s_k) + mean_fake h(-s_k)
                                     (E and G run without gradients)
        E+G step (every d-th):       L_EG = sum_k mean_real s_k - mean_fake s_k
                                     (D's parameters get no gradient)

    with ``h(t) = max(0, 1 - t)`` (``GANHingeLoss``).  Each step updates only its own
    optimiser's parameters: ``optim_wrapper['discriminator']`` owns ``D``,
    ``optim_wrapper['generator']`` owns ``G``, the backbone and the neck (mmengine's
    ``OptimWrapperDict``, built by ``MultiOptimWrapperConstructor``).  Both steps of an
    iteration use its batch; the E+G step draws its own ``z``.  The D steps taken so far are a
    buffer, so a resumed run continues the D / E+G rhythm.

    Images: ``E`` reads the data preprocessor's (normalised) images, as every transfer
    evaluation does; ``D`` and ``G`` work in ``[-1, 1]`` pixels (``G`` ends in tanh): the real
    images are un-normalised to ``x / 127.5 - 1`` and, with ``gan_size``, resized (area) to
    ``G``'s resolution (the paper's encoder reads 256 px, ``G`` / ``D`` 128 px).

    Randomness: ``z`` and the encoder's ``eps`` are drawn from torch's global generator for the
    global batch (``world_size x B`` rows) and each rank takes its rows: with one seed on every
    rank (``randomness.diff_rank_seed=False``) a DDP run sees the noise a single process with
    the global batch would; with per-rank seeds the ranks' rows are independent draws.

    Under DDP the model needs per-network wrappers (``model_wrapper_cfg=dict(type=
    'mmpretrain.MMSSLSeparateDistributedDataParallel')``): each step then all-reduces the
    gradients of the networks it trains.

    Args:
        backbone (dict): The encoder's backbone, any mmpretrain backbone.
        neck (dict): ``BigBiGANEncoderNeck`` (its ``in_channels`` the backbone's output).
        generator (dict): ``BigBiGANGenerator``.
        discriminator (dict): ``BigBiGANDiscriminator``.
        loss (dict): Defaults to ``dict(type='GANHingeLoss')``.
        disc_steps (int): D steps per E+G step. Defaults to 2.
        gan_size (int, optional): Resolution of ``G`` and ``D`` when the encoder reads larger
            images; None: the encoder's input size. Defaults to None.
        data_preprocessor (dict, optional): Defaults to ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 generator: dict,
                 discriminator: dict,
                 loss: dict = dict(type='GANHingeLoss'),
                 disc_steps: int = 2,
                 gan_size: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.generator = MODELS.build(generator)
        self.discriminator = MODELS.build(discriminator)
        self.loss_module = MODELS.build(loss)
        if not isinstance(disc_steps, int) or isinstance(disc_steps, bool) or disc_steps < 1:
            raise ValueError(f'BigBiGAN: disc_steps (D steps per E+G step) must be a positive '
                             f'int, got {disc_steps!r}')
        dims = dict(neck=self.neck.latent_dim, generator=self.generator.latent_dim,
                    discriminator=self.discriminator.latent_dim)
        if len(set(dims.values())) != 1:
            raise ValueError(f'BigBiGAN: the latent sizes differ: {dims}; set model.neck.'
                             f'latent_dim, model.generator.latent_dim and model.discriminator.'
                             f'latent_dim to one value')
        if gan_size is not None and gan_size != self.generator.out_size:
            raise ValueError(f'BigBiGAN: gan_size={gan_size} but the generator makes '
                             f'{self.generator.out_size} px images (generator.out_size); '
                             f'set both to the resolution D compares at')
        self.latent_dim = self.generator.latent_dim
        self.disc_steps = disc_steps
        self.gan_size = gan_size
        self.register_buffer('num_d_steps', torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------ pieces
    @staticmethod
    def _image(inputs: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f'BigBiGAN expects one view per sample, got {len(inputs)}')
            inputs = inputs[0]
        return inputs

    def noise(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """``n x latent_dim`` standard normal rows: this rank's share of a global draw."""
        world, rank = get_world_size(), get_rank()
        eps = torch.randn(world * n, self.latent_dim, device=like.device, dtype=like.dtype)
        return eps[rank * n:(rank + 1) * n]

    def to_gan_space(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed images -> ``[-1, 1]`` pixels at ``D``'s resolution."""
        pre = self.data_preprocessor
        if getattr(pre, '_enable_normalize', False):
            x = x * pre.std + pre.mean
        x = x / 127.5 - 1
        if self.gan_size is not None and tuple(x.shape[-2:]) != (self.gan_size, ) * 2:
            x = F.interpolate(x, size=(self.gan_size, self.gan_size), mode='area')
        return x

    def encode(self, x: torch.Tensor, sample: bool = True,
               wrapped: bool = True) -> torch.Tensor:
        """``z^ = mu + sigma * eps`` (``mu`` with ``sample=False`` or a deterministic neck)."""
        backbone, neck = (self.backbone, self.neck) if wrapped else \
            (_unwrap(self.backbone), _unwrap(self.neck))
        mu, sigma = neck(backbone(x))
        if sigma is None or not sample:
            return mu
        return mu + sigma * self.noise(mu.shape[0], mu)

    def scores(self, discriminator: nn.Module, x_real: torch.Tensor, z_hat: torch.Tensor,
               x_fake: torch.Tensor, z: torch.Tensor
               ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """D's scores of the real and of the fake pairs, in one forward pass."""
        if x_fake.shape[1:] != x_real.shape[1:]:
            raise ValueError(f'BigBiGAN: the generator makes {tuple(x_fake.shape[1:])} images '
                             f'but D compares them with real ones of {tuple(x_real.shape[1:])}; '
                             f'set model.generator.out_size (and model.gan_size when the '
                             f'encoder reads larger images) to the real images\' size')
        out = discriminator(torch.cat([x_real, x_fake]), torch.cat([z_hat, z]))
        b = x_real.shape[0]
        return {k: v[:b] for k, v in out.items()}, {k: v[b:] for k, v in out.items()}

    def discriminator_losses(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``L_D``'s terms for the batch ``x``; gradients reach D only."""
        with torch.no_grad():
            z_hat = self.encode(x, wrapped=False)
            z = self.noise(x.shape[0], z_hat)
            x_fake = _unwrap(self.generator)(z)
        real, fake = self.scores(self.discriminator, self.to_gan_space(x), z_hat, x_fake, z)
        return self.loss_module.discriminator(real, fake)

    def encoder_generator_losses(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``L_EG``'s terms for the batch ``x``; gradients reach E and G only."""
        z_hat = self.encode(x)
        z = self.noise(x.shape[0], z_hat)
        x_fake = self.generator(z)
        discriminator = _unwrap(self.discriminator)  # no DDP reduction for D in this step
        with _frozen(discriminator):
            real, fake = self.scores(discriminator, self.to_gan_space(x), z_hat, x_fake, z)
        return self.loss_module.generator(real, fake)

    # ------------------------------------------------------------------------------ training
    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapperDict) -> Dict[str, torch.Tensor]:
        """One D step, and every ``disc_steps``-th iteration one E+G step (see the class)."""
        keys = set(optim_wrapper.keys()) if isinstance(optim_wrapper, OptimWrapperDict) \
            else None
        if keys is None or not {EG_KEY, D_KEY} <= keys:
            raise TypeError(
                f'BigBiGAN trains with two optimisers, got {type(optim_wrapper).__name__}'
                f'{" with keys " + str(sorted(keys)) if keys else ""}; the config needs '
                f"optim_wrapper=dict(constructor='MultiOptimWrapperConstructor', "
                f"{EG_KEY}=dict(optimizer=..., modules={list(EG_MODULES)}), "
                f"{D_KEY}=dict(optimizer=..., modules={list(D_MODULES)})) "
                f'(configs/bigbigan/)')
        data = self.data_preprocessor(data, True)
        x = self._image(data['inputs'])
        d_wrapper = optim_wrapper[D_KEY]
        with d_wrapper.optim_context(self.discriminator):
            d_losses = self.discriminator_losses(x)
        loss_d, log_vars = self.parse_losses(d_losses)
        d_wrapper.update_params(loss_d)
        self.num_d_steps += 1
        if int(self.num_d_steps) % self.disc_steps == 0:
            eg_wrapper = optim_wrapper[EG_KEY]
            with eg_wrapper.optim_context(self.generator):
                eg_losses = self.encoder_generator_losses(x)
            loss_eg, eg_vars = self.parse_losses(eg_losses)
            eg_wrapper.update_params(loss_eg)
            eg_vars['loss_eg'] = eg_vars.pop('loss')
            log_vars.update(eg_vars)
        return log_vars

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: Optional[List[DataSample]] = None,
             **kwargs) -> Dict[str, torch.Tensor]:
        """Both objectives' terms on one batch (one pass of E, G and D), for inspection; no
        update (training goes through :meth:`train_step`)."""
        if get_world_size() > 1 and torch.is_grad_enabled() and \
                not is_model_wrapper(self.discriminator):
            raise RuntimeError("BigBiGAN under DDP trains each network with its own wrapper: "
                               "set model_wrapper_cfg=dict(type='mmpretrain."
                               "MMSSLSeparateDistributedDataParallel') (a whole-model DDP "
                               "steps one optimiser)")
        x = self._image(inputs)
        z_hat = self.encode(x)
        z = self.noise(x.shape[0], z_hat)
        real, fake = self.scores(self.discriminator, self.to_gan_space(x), z_hat,
                                 self.generator(z), z)
        return {**self.loss_module.discriminator(real, fake),
                **self.loss_module.generator(real, fake)}

    # ------------------------------------------------------------------------------ readers
    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z)`` in ``[-1, 1]``, G in eval mode (no BatchNorm / spectral-norm update)."""
        generator = _unwrap(self.generator)
        was_training = generator.training
        generator.eval()
        try:
            return generator(z.to(self.num_d_steps.device))
        finally:
            generator.train(was_training)

    def collapse_outputs(self, inputs) -> Dict[str, torch.Tensor]:
        """The encoder's mean ``mu`` (``CollapseMonitorHook``)."""
        x = self._image(inputs)
        mu, _ = _unwrap(self.neck)(_unwrap(self.backbone)(x))
        return dict(embedding=mu)
