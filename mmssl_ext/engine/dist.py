"""Distributed training on machines without CUDA (gloo), on top of mmengine's launcher.

mmengine 0.10.7 assumes a GPU under ``--launcher pytorch``: ``init_dist`` calls
``torch.cuda.set_device`` and the Runner passes ``device_ids=[LOCAL_RANK]`` to DDP.  Both fail on
CPU.  :func:`setup_cpu_distributed` initialises the gloo process group itself (the Runner then skips
``init_dist``) and selects :class:`MMSSLDistributedDataParallel`, which drops ``device_ids`` for a
CPU module.  On GPU machines nothing changes.

torch's ``SyncBatchNorm`` (mmcv's ``norm_cfg=dict(type='SyncBN')``, which mmpretrain's SimCLR,
BYOL, SwAV, ... recipes put in their necks) refuses CPU modules: DDP raises "SyncBatchNorm layers
only work with GPU modules" when it wraps one.  For a CPU module the wrapper therefore replaces
every ``SyncBatchNorm`` by :class:`CPUSyncBatchNorm`, which computes the same thing with two
differentiable all-reduces over gloo: the batch statistics of the whole global batch, as on GPUs.
"""
import os

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.model import MMDistributedDataParallel, MMSeparateDistributedDataParallel

from mmssl_ext.registry import MODEL_WRAPPERS


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) with the gradient all-reduced too: d(sum_r x_r)/dx_s summed over the
    ranks' losses.  (``torch.distributed.nn.functional.all_reduce`` does the same, deprecated.)"""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        torch_dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        return _SumAcrossRanks.apply(grad, ctx.group), None


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``torch.nn.SyncBatchNorm`` for CPU processes (gloo): batch statistics over all ranks.

    In training the mean and the (biased) variance that normalise the input are those of the
    global batch, the union of every rank's batch along the batch and spatial axes, computed in
    two passes (global sum, then the global sum of squared deviations from the global mean) with
    an all-reduce whose backward all-reduces the gradient: the input gradients are those of one
    BatchNorm over the global batch, as with ``SyncBatchNorm`` on GPUs.  The running statistics
    are updated with the global mean and the unbiased global variance (``momentum=None``:
    cumulative average).  Ranks may hold different batch sizes.  In eval mode, with one
    process, or with running statistics used in training (``track_running_stats`` and not
    ``training``) it is a plain BatchNorm.

    Built by :meth:`convert` from a ``SyncBatchNorm`` (same parameters, buffers and process
    group); any input rank >= 2 (``SyncBatchNorm`` serves 1d, 2d and 3d).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f'expected at least 2D input (got {input.dim()}D input)')

    def _world_size(self) -> int:
        if not torch_dist.is_available() or not torch_dist.is_initialized():
            return 1
        return torch_dist.get_world_size(self.process_group or torch_dist.group.WORLD)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        use_batch_stats = self.training or not self.track_running_stats
        if not use_batch_stats or self._world_size() == 1:
            return super().forward(input)
        group = self.process_group or torch_dist.group.WORLD
        dims = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        # statistics in float32 at least (autocast may hand in bfloat16); the sums and the count
        # travel as float64, exact for any realistic number of values per channel
        x = input if input.dtype in (torch.float32, torch.float64) else input.float()
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64)
        total = _SumAcrossRanks.apply(torch.cat([x.sum(dims).double(), count]), group)
        n = total[-1]
        if int(n) < 2:
            raise ValueError(f'CPUSyncBatchNorm: {int(n)} value per channel over all ranks; '
                             'batch statistics need at least 2')
        mean = (total[:-1] / n).to(x.dtype)
        n = n.to(x.dtype)
        centred = x - mean.view(shape)
        var = _SumAcrossRanks.apply(centred.pow(2).sum(dims), group) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        out = out.to(input.dtype)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else self.momentum)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * n / (n - 1), alpha=factor)
        return out

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every ``nn.SyncBatchNorm`` replaced by a ``CPUSyncBatchNorm`` that
        shares its parameters and buffers (in place for children; returns the new module when
        ``module`` itself is one)."""
        if isinstance(module, nn.SyncBatchNorm):
            new = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, module.process_group)
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            if module.track_running_stats:
                new.running_mean, new.running_var = module.running_mean, module.running_var
                new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            new = cls.convert(child)
            if new is not child:
                setattr(module, name, new)
        return module


@MODEL_WRAPPERS.register_module()
class MMSSLDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that also wraps CPU modules (gloo).

    For a CPU module ``device_ids`` / ``output_device`` are dropped and every
    ``nn.SyncBatchNorm`` becomes a :class:`CPUSyncBatchNorm` (torch's needs a GPU).
    """

    def __init__(self, module, detect_anomalous_params: bool = False, **kwargs):
        on_cpu = all(not p.is_cuda for p in module.parameters())
        if on_cpu:
            # DDP refuses device_ids / output_device for CPU modules
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
            module = CPUSyncBatchNorm.convert(module)
        super().__init__(
            module=module, detect_anomalous_params=detect_anomalous_params, **kwargs)


@MODEL_WRAPPERS.register_module()
class MMSSLSeparateDistributedDataParallel(MMSeparateDistributedDataParallel):
    """mmengine's per-sub-module DDP (one DDP per trainable child: a GAN's networks, each
    stepped by its own optimiser) whose children are :class:`MMSSLDistributedDataParallel`, so
    that it also runs on CPU (gloo).  Configs name it as
    ``model_wrapper_cfg=dict(type='mmpretrain.MMSSLSeparateDistributedDataParallel')``.
    """

    def __init__(self, module: nn.Module, broadcast_buffers: bool = False,
                 find_unused_parameters: bool = False, **kwargs):
        nn.Module.__init__(self)  # as mmengine's: no DDP of the whole model
        self.module = module
        device = get_device()
        for name, sub_module in module._modules.items():
            if sub_module is None:
                continue
            sub_module = sub_module.to(device)
            if any(p.requires_grad for p in sub_module.parameters()):
                sub_module = MMSSLDistributedDataParallel(
                    module=sub_module, broadcast_buffers=broadcast_buffers,
                    find_unused_parameters=find_unused_parameters, **kwargs)
            module._modules[name] = sub_module


def setup_cpu_distributed(cfg: Config) -> None:
    """Prepare ``cfg`` (and the process group) for a torchrun launch without CUDA.

    No-op when the launcher is ``'none'`` or CUDA is available.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RuntimeError(
            f'launcher={cfg.launcher!r} without CUDA is not supported; use torchrun '
            f'(tools/dist_train.sh, --launcher pytorch) for CPU distributed runs')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k not in ('backend',)}
        if 'timeout' in kwargs and not hasattr(kwargs['timeout'], 'total_seconds'):
            import datetime
            kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if wrapper.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', 'mmengine.MMDistributedDataParallel'):
        wrapper = dict(wrapper)
        # scoped name: the Runner looks wrappers up in mmengine's root registry, which finds
        # mmpretrain's child registry (where ours lives) only through the scope prefix
        wrapper['type'] = 'mmpretrain.MMSSLDistributedDataParallel'
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters',
                           cfg.get('find_unused_parameters', False))
        cfg.model_wrapper_cfg = wrapper
