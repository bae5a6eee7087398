"""``tools/train.py``: the same flags and behaviour as mmpretrain's ``tools/train.py``.

The runtime (exact resume, atomic checkpoints, NaN / memory-bank guards, checked image loading,
CPU gloo launches, named config errors) lives in the configs (``configs/_base_/
default_runtime.py``: ``runner_type='SSLRunner'`` + ``ssl_runtime``) and in
:mod:`mmssl_ext.engine.runner`, so mmpretrain's own ``tools/train.py`` and ``mim train`` get it
too.  This CLI only merges the flags and, for a config that does not inherit the runtime base
(e.g. an ``mmpretrain::`` recipe), adds that runtime and logs what it added.
"""
import argparse
import os
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmssl_ext  # noqa: F401  registers everything
# build_runner / finalize_dataloader_cfgs / use_checked_image_loading / loader_defaults lived
# here before engine.runner: kept importable from here
from mmssl_ext.engine.runner import (DEFAULT_SSL_RUNTIME, _default_dataloader_cfg,  # noqa: F401
                                     add_default_runtime, apply_runtime, build_runner,
                                     finalize_dataloader_cfgs, loader_defaults,
                                     merge_train_options, use_checked_image_loading)
from mmssl_ext.utils.config import load_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model (mmssl_ext)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, without a value, from the latest '
        'checkpoint in the work directory')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training (float16 on a GPU, '
                        'bfloat16 autocast on a CPU that supports it, else float32 with a '
                        'message)')
    parser.add_argument('--channels-last', action='store_true',
                        help='train in the channels_last (NHWC) memory layout (the config key '
                        'channels_last=True)')
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


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command-line arguments into ``cfg`` (mmpretrain's semantics)."""
    return merge_train_options(
        cfg, args.config, args.cfg_options, work_dir=args.work_dir, resume=args.resume,
        amp=args.amp, no_validate=args.no_validate, auto_scale_lr=args.auto_scale_lr,
        no_pin_memory=args.no_pin_memory, no_persistent_workers=args.no_persistent_workers,
        launcher=args.launcher, channels_last=args.channels_last)


#: the hooks every run gets (now declared by configs/_base_/default_runtime.py)
SAFETY_HOOKS = tuple(h['type'] for h in DEFAULT_SSL_RUNTIME['hooks']
                     if h['type'] != 'RNGStateHook')


def main(argv: Optional[List[str]] = None) -> Runner:
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config), args)
    runner = build_runner(cfg)
    runner.train()
    return runner
