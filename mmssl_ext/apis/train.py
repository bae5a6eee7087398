"""``tools/train.py``: the same flags and behaviour as mmpretrain's ``tools/train.py``.

Differences, all additive: ``mmssl_ext`` is imported first (registries + the safe-load allow-list
that lets ``--resume`` work on torch >= 2.6), and ``--launcher pytorch`` also works without CUDA
(gloo; see :mod:`mmssl_ext.engine.dist`).
"""
import argparse
import os
import os.path as osp
from copy import deepcopy
from typing import List, Optional

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmssl_ext  # noqa: F401  registers everything
from mmssl_ext.utils.config import load_config, strip_collate_scope
from mmssl_ext.engine.dist import setup_cpu_distributed


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model (mmssl_ext)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, without a value, from the latest '
        'checkpoint in the work directory')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by actual / base batch size')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='disable pin_memory in the dataloaders')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='disable persistent_workers in the dataloaders')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, xxx=yyy; lists as key="[a,b]" or key=a,b')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _default_dataloader_cfg(cfg: Config, field: str, defaults: dict,
                            no_pin_memory: bool,
                            no_persistent_workers: bool = False) -> None:
    if cfg.get(field, None) is None:
        return
    loader = deepcopy(ConfigDict(defaults))
    loader.update(cfg[field])
    if no_pin_memory:
        loader['pin_memory'] = False
    if no_persistent_workers:
        loader['persistent_workers'] = False
    strip_collate_scope(loader)
    cfg[field] = loader


def finalize_dataloader_cfgs(cfg: Config) -> None:
    """After every override: torch refuses ``persistent_workers`` without worker processes, so
    ``--cfg-options train_dataloader.num_workers=0`` alone must not break the run."""
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field, None)
        if loader is not None and loader.get('num_workers', 0) == 0 and \
                loader.get('persistent_workers', False):
            loader['persistent_workers'] = False


def loader_defaults(cfg: Config, **extra) -> dict:
    """Dataloader defaults of mmpretrain's tools: ``pin_memory`` and ``default_collate``.

    mmdet batches images of different sizes with mmengine's ``pseudo_collate``, so mmdet-scoped
    configs (our detection benchmarks) keep their own collate function.
    """
    defaults = dict(pin_memory=True, **extra)
    if cfg.get('default_scope', 'mmpretrain') != 'mmdet':
        defaults['collate_fn'] = dict(type='default_collate')
    return defaults


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command-line arguments into ``cfg`` (mmpretrain's semantics)."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA device: mmengine\'s AmpOptimWrapper does not '
                             'run on the CPU')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    defaults = loader_defaults(cfg, persistent_workers=True)
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _default_dataloader_cfg(cfg, field, defaults, args.no_pin_memory,
                                args.no_persistent_workers)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    finalize_dataloader_cfgs(cfg)
    return cfg


def build_runner(cfg: Config) -> Runner:
    setup_cpu_distributed(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def main(argv: Optional[List[str]] = None) -> Runner:
    args = parse_args(argv)
    cfg = load_config(args.config)
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg)
    runner.train()
    return runner
