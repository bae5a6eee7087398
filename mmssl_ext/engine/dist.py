"""Distributed training on machines without CUDA (gloo), on top of mmengine's launcher.

mmengine 0.10.7 assumes a GPU under ``--launcher pytorch``: ``init_dist`` calls
``torch.cuda.set_device`` and the Runner passes ``device_ids=[LOCAL_RANK]`` to DDP.  Both fail on
CPU.  :func:`setup_cpu_distributed` initialises the gloo process group itself (the Runner then skips
``init_dist``) and selects :class:`MMSSLDistributedDataParallel`, which drops ``device_ids`` for a
CPU module.  On GPU machines nothing changes.
"""
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

from mmssl_ext.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class MMSSLDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that also wraps CPU modules (gloo)."""

    def __init__(self, module, detect_anomalous_params: bool = False, **kwargs):
        on_cpu = all(not p.is_cuda for p in module.parameters())
        if on_cpu:
            # DDP refuses device_ids / output_device for CPU modules
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        super().__init__(
            module=module, detect_anomalous_params=detect_anomalous_params, **kwargs)


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
