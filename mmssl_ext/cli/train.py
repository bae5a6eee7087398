"""``tools/train.py``: the same flags and behaviour as mmpretrain's ``tools/train.py``.

Differences, all additive: ``mmssl_ext`` is imported first (registries + the safe-load allow-list
that lets ``--resume`` work on torch >= 2.6), and ``--launcher pytorch`` also works without CUDA
(gloo; see :mod:`mmssl_ext.engine.dist`).  ``--resume`` continues exactly: every run gets
``RNGStateHook``, which keeps the random generators' states in the checkpoints, and checkpoints are
written atomically (``AtomicCheckpointHook``: temporary file, then rename).  Bad input stops
early with a clear error: every run gets :data:`SAFETY_HOOKS` (NaN / Inf loss, memory bank shorter
than the training set) and ``LoadImageFromFileChecked`` for its training images (unreadable files
named, with their annotation file), and a misspelled config key is named with its closest valid
spelling.
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
from mmssl_ext.engine.atomic_checkpoint import use_atomic_checkpoints
from mmssl_ext.engine.hooks.rng_state import add_exact_resume_hooks
from mmssl_ext.datasets.transforms.loading import ImageLoadError
from mmssl_ext.utils.config_errors import explain_config_errors


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
    add_safety_hooks(cfg)
    add_exact_resume_hooks(cfg)  # RNG states in every checkpoint: --resume continues bitwise
    use_atomic_checkpoints(cfg)  # a killed write never replaces the last good checkpoint
    use_checked_image_loading(cfg)
    return cfg


#: hooks every run of tools/train.py gets (appended to ``custom_hooks`` unless listed there)
SAFETY_HOOKS = ('NaNLossCheckHook', 'MemoryBankSizeCheckHook')


def _type_name(t) -> str:
    return t.__name__ if isinstance(t, type) else str(t).rsplit('.', 1)[-1]


def add_safety_hooks(cfg: Config) -> None:
    """Append :data:`SAFETY_HOOKS` to ``cfg.custom_hooks`` unless the config lists them already
    (a config tunes or switches one off by listing it, e.g.
    ``dict(type='NaNLossCheckHook', keys=[])``)."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    present = {_type_name(h.get('type')) if isinstance(h, dict) else type(h).__name__
               for h in hooks}
    hooks += [dict(type=name) for name in SAFETY_HOOKS if name not in present]
    cfg.custom_hooks = hooks


def use_checked_image_loading(cfg: Config) -> None:
    """Load training images with ``LoadImageFromFileChecked`` instead of mmcv's
    ``LoadImageFromFile``: same arguments and, for ``color_type='color'``, the same pixels, but
    errors that name the file (see :mod:`mmssl_ext.datasets.transforms.loading`).

    Only mmpretrain-scoped ``train_dataloader`` pipelines (and the datasets they wrap) with the
    plain type name and colour loading are changed; write ``type='mmcv.LoadImageFromFile'`` to
    keep mmcv's transform.
    """
    if cfg.get('default_scope', 'mmpretrain') not in (None, 'mmpretrain'):
        return
    loader = cfg.get('train_dataloader', None)

    def visit(dataset) -> None:
        if not isinstance(dataset, dict):
            return
        for t in dataset.get('pipeline', None) or []:
            if isinstance(t, dict) and t.get('type') == 'LoadImageFromFile' and \
                    t.get('_scope_', 'mmpretrain') == 'mmpretrain' and \
                    t.get('color_type', 'color') == 'color':
                t['type'] = 'LoadImageFromFileChecked'
        visit(dataset.get('dataset', None))
        for d in dataset.get('datasets', None) or []:
            visit(d)

    if isinstance(loader, dict):
        visit(loader.get('dataset', None))


def _name_annotation_file(err: ImageLoadError, runner: Runner) -> ImageLoadError:
    """``err`` with the annotation file of the training set that lists the image."""
    dataset = runner.train_dataloader.dataset
    while getattr(dataset, 'dataset', None) is not None:  # RepeatDataset & co.
        dataset = dataset.dataset
    ann_file = getattr(dataset, 'ann_file', None)
    if not ann_file:
        return err
    return type(err)(f'{err}\nThe image is listed in the annotation file {ann_file} '
                     f'(train_dataloader.dataset.ann_file, {type(dataset).__name__})')


def build_runner(cfg: Config) -> Runner:
    setup_cpu_distributed(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def main(argv: Optional[List[str]] = None) -> Runner:
    args = parse_args(argv)
    cfg = load_config(args.config)
    cfg = merge_args(cfg, args)
    with explain_config_errors(cfg):  # a misspelled key: name it and the closest valid one
        runner = build_runner(cfg)
        try:
            runner.train()
        except ImageLoadError as e:
            raise _name_annotation_file(e, runner) from e
    return runner
