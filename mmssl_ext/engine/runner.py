"""One runtime for every entry point: :class:`SSLRunner` and the ``ssl_runtime`` config section.

``configs/_base_/default_runtime.py`` (inherited by every training config of ours) declares::

    runner_type = 'SSLRunner'
    ssl_runtime = dict(hooks=[...], atomic_checkpoints=True, checked_image_loading=True,
                       resumable_swav=True)

mmengine (and so mmpretrain's ``tools/train.py`` and ``mim train``) builds a config that names a
``runner_type`` through the ``RUNNERS`` registry, i.e. through :meth:`SSLRunner.from_cfg`, which
applies ``ssl_runtime`` to the config before the runner is built (:func:`apply_runtime`): the same
config then trains identically under our ``tools/train.py``, mmpretrain's and ``mim``.
Our ``tools/train.py`` adds :data:`DEFAULT_SSL_RUNTIME` (and logs it) to a config that does not
inherit the runtime base, e.g. an ``mmpretrain::`` recipe given on the command line.
"""
import copy
import logging
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.dist import all_gather, get_world_size
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmssl_ext.datasets.transforms.loading import ImageLoadError
from mmssl_ext.utils.config import strip_collate_scope, type_name
from mmssl_ext.utils.config_errors import explain_config_errors
from .atomic_checkpoint import use_atomic_checkpoints
from .cpu_amp import cpu_bf16_support, use_channels_last
from .data_sizing import size_from_training_set
from .dist import setup_cpu_distributed

__all__ = ['DEFAULT_SSL_RUNTIME', 'SSLRunner', 'add_default_runtime', 'apply_runtime',
           'build_runner', 'finalize_dataloader_cfgs', 'loader_defaults', 'merge_train_options',
           'use_amp', 'use_checked_image_loading']

#: what ``configs/_base_/default_runtime.py`` declares (a test keeps the two equal)
DEFAULT_SSL_RUNTIME = dict(
    hooks=[
        dict(type='NaNLossCheckHook'),
        dict(type='MemoryBankSizeCheckHook'),
        dict(type='RNGStateHook'),
        dict(type='CollapseMonitorHook'),
    ],
    atomic_checkpoints=True,
    checked_image_loading=True,
    resumable_swav=True,
)
#: ``applied=True`` marks a config whose runtime is already in it (a dumped work-dir config, or
#: one our ``tools/train.py`` merged): it is not applied again, so a later edit of the config
#: (e.g. a test removing a hook) stands
_RUNTIME_KEYS = set(DEFAULT_SSL_RUNTIME) | {'applied'}


def _hook_type(h) -> str:
    htype = h.get('type') if isinstance(h, dict) else type(h)
    return type_name(htype)


def add_runtime_hooks(cfg: Config, hooks: List[dict]) -> List[str]:
    """Append ``hooks`` to ``cfg.custom_hooks`` unless a hook of the same type is listed there
    (a config tunes or switches one off by listing it, e.g.
    ``dict(type='NaNLossCheckHook', keys=[])``); returns the added type names."""
    custom = list(cfg.get('custom_hooks', None) or [])
    present = {_hook_type(h) for h in custom}
    added = [copy.deepcopy(h) for h in hooks if _hook_type(h) not in present]
    cfg.custom_hooks = custom + added
    return [_hook_type(h) for h in added]


def use_resumable_swav(cfg: Config) -> bool:
    """mmpretrain's ``SwAVHook`` -> ``ResumableSwAVHook`` (same arguments; the queue then
    travels in the checkpoint: :mod:`mmssl_ext.engine.hooks.swav_queue`)."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    changed = False
    for i, h in enumerate(hooks):
        if isinstance(h, dict) and h.get('type') in ('SwAVHook', 'mmpretrain.SwAVHook'):
            hooks[i] = dict(h, type='ResumableSwAVHook')
            changed = True
    cfg.custom_hooks = hooks
    return changed


def use_checked_image_loading(cfg: Config) -> bool:
    """Load training images with ``LoadImageFromFileChecked`` instead of mmcv's
    ``LoadImageFromFile``: same arguments and, for ``color_type='color'``, the same pixels, but
    errors that name the file (see :mod:`mmssl_ext.datasets.transforms.loading`).

    Only mmpretrain-scoped ``train_dataloader`` pipelines (and the datasets they wrap) with the
    plain type name and colour loading are changed; write ``type='mmcv.LoadImageFromFile'`` to
    keep mmcv's transform.  Returns whether anything changed.
    """
    if cfg.get('default_scope', 'mmpretrain') not in (None, 'mmpretrain'):
        return False
    loader = cfg.get('train_dataloader', None)
    changed = []

    def visit(dataset) -> None:
        if not isinstance(dataset, dict):
            return
        for t in dataset.get('pipeline', None) or []:
            if isinstance(t, dict) and t.get('type') == 'LoadImageFromFile' and \
                    t.get('_scope_', 'mmpretrain') == 'mmpretrain' and \
                    t.get('color_type', 'color') == 'color':
                t['type'] = 'LoadImageFromFileChecked'
                changed.append(t)
        visit(dataset.get('dataset', None))
        for d in dataset.get('datasets', None) or []:
            visit(d)

    if isinstance(loader, dict):
        visit(loader.get('dataset', None))
    return bool(changed)


def finalize_dataloader_cfgs(cfg: Config) -> None:
    """What every entry point needs after every override: torch refuses ``persistent_workers``
    without worker processes (so ``train_dataloader.num_workers=0`` alone must not break a run),
    ``collate_fn`` dicts from ``mmpretrain::`` bases must lose the ``_scope_`` that
    ``Runner.build_dataloader`` would pass to the function, and ``pin_memory`` (mmpretrain's
    default) only warns on a machine without CUDA."""
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field, None)
        if loader is None or not hasattr(loader, 'get'):
            continue
        strip_collate_scope(loader)
        if loader.get('num_workers', 0) == 0 and loader.get('persistent_workers', False):
            loader['persistent_workers'] = False
        if loader.get('pin_memory', False) and not torch.cuda.is_available():
            loader['pin_memory'] = False


def apply_runtime(cfg: Config) -> List[str]:
    """Apply ``cfg.ssl_runtime`` to ``cfg`` in place, once; returns what it changed.

    Raises:
        KeyError: ``ssl_runtime`` has a key this version does not know (named, with the valid
            ones).
    """
    runtime = cfg.get('ssl_runtime', None)
    if runtime is None or runtime.get('applied', False):
        finalize_dataloader_cfgs(cfg)
        return []
    unknown = set(runtime) - _RUNTIME_KEYS
    if unknown:
        raise KeyError(f'ssl_runtime has unknown keys {sorted(unknown)}; valid keys: '
                       f'{sorted(_RUNTIME_KEYS)} (configs/_base_/default_runtime.py)')
    done = []
    if runtime.get('resumable_swav', False) and use_resumable_swav(cfg):
        done.append('SwAVHook -> ResumableSwAVHook')
    added = add_runtime_hooks(cfg, runtime.get('hooks', None) or [])
    if added:
        done.append('custom_hooks += ' + ', '.join(added))
    if runtime.get('atomic_checkpoints', False):
        before = copy.deepcopy(cfg.get('default_hooks', {}).get('checkpoint', None))
        use_atomic_checkpoints(cfg)
        if before != cfg.get('default_hooks', {}).get('checkpoint', None):
            done.append('CheckpointHook -> AtomicCheckpointHook')
    if runtime.get('checked_image_loading', False) and use_checked_image_loading(cfg):
        done.append('LoadImageFromFile -> LoadImageFromFileChecked (train_dataloader)')
    finalize_dataloader_cfgs(cfg)
    runtime['applied'] = True
    return done


def add_default_runtime(cfg: Config, source: str = 'tools/train.py') -> bool:
    """Give a config that does not inherit ``configs/_base_/default_runtime.py`` its runtime
    (:data:`DEFAULT_SSL_RUNTIME`, and ``runner_type='SSLRunner'`` unless it names another
    runner), and log that; returns whether anything was added."""
    if cfg.get('ssl_runtime', None) is not None:
        return False
    cfg.ssl_runtime = ConfigDict(copy.deepcopy(DEFAULT_SSL_RUNTIME))
    if cfg.get('runner_type', None) is None:
        cfg.runner_type = 'SSLRunner'
    print_log(f'{source}: the config does not inherit configs/_base_/default_runtime.py; '
              f'added its runtime (ssl_runtime={dict(DEFAULT_SSL_RUNTIME)}, '
              f'runner_type={cfg.runner_type!r})', logger='current')
    return True


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


class ExpectedNoticesAsInfo(logging.Filter):
    """mmengine warnings that our runs trigger by design and that a user cannot act on, logged
    as INFO: the restart of an iteration-based loop's ``DefaultSampler`` at each epoch (our
    configs keep it on purpose: a fresh ``seed + epoch`` shuffle per epoch, the order the
    published numbers were measured with) and the deprecation notes of mmengine's own
    ``CheckpointHook``."""

    PREFIXES = ('Reach the end of the dataloader', '"FileClient" will be deprecated',
                '"HardDiskBackend" is the alias')

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith(self.PREFIXES):
            record.levelno, record.levelname = logging.INFO, 'INFO'
        return True


@RUNNERS.register_module()
class SSLRunner(Runner):
    """mmengine's ``Runner`` that applies the config's ``ssl_runtime`` before it is built, runs
    torchrun launches on machines without CUDA (gloo), and names the culprit of a bad config key
    or an unreadable training image (``explain_config_errors``, the annotation file).

    Sizes that follow from the data (a memory bank's ``length``, DeepCluster's ``num_samples``)
    left unset in ``model`` are set from the training set before the model is built and wrapped
    (:func:`~mmssl_ext.engine.data_sizing.size_from_training_set`); the dataset built to count
    them is the one the training loop uses.  ``resuming_from`` names the checkpoint while
    :meth:`resume` loads it (``MemoryBankSizeCheckHook`` checks it against the training set).
    """

    def __init__(self, model, work_dir, train_dataloader=None, *args, **kwargs) -> None:
        model, train_dataloader, n, keys = size_from_training_set(
            model, train_dataloader, kwargs.get('default_scope', 'mmengine'))
        super().__init__(model, work_dir, train_dataloader, *args, **kwargs)
        self.logger.addFilter(ExpectedNoticesAsInfo())
        if self.cfg.get('channels_last', False):  # the config key (tools/train.py --channels-last)
            use_channels_last(self.model.module if hasattr(self.model, 'module') else self.model)
            self.logger.info('channels_last: model and data preprocessor outputs in NHWC')
        self.resuming_from: Optional[str] = None
        if keys:
            self._check_ranks_agree(n)
            self.logger.info(f'memory bank length set from the training set: {n} '
                             f'({", ".join(keys)})')

    def _check_ranks_agree(self, n: int) -> None:
        """Every rank counted the same training set (a folder that changed while the ranks
        scanned it would give ranks banks of different lengths)."""
        if get_world_size() == 1:
            return
        counts = [int(c) for c in all_gather(torch.tensor([n], dtype=torch.long))]
        if len(set(counts)) > 1:
            raise RuntimeError(f'the ranks counted different training sets: {counts} samples '
                               f'(rank order); did the data change while the run started?')

    def resume(self, filename: str, *args, **kwargs) -> None:
        self.resuming_from = filename
        try:
            return super().resume(filename, *args, **kwargs)
        finally:
            self.resuming_from = None

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'SSLRunner':
        cfg = copy.deepcopy(cfg)
        done = apply_runtime(cfg)
        if done:
            print_log('ssl_runtime: ' + '; '.join(done), logger='current')
        setup_cpu_distributed(cfg)
        with explain_config_errors(cfg):
            return super().from_cfg(cfg)

    def train(self) -> torch.nn.Module:
        with explain_config_errors(self.cfg):
            try:
                return super().train()
            except ImageLoadError as e:
                raise _name_annotation_file(e, self) from e


def build_runner(cfg: Config) -> Runner:
    """Build the runner ``cfg`` asks for, as mmpretrain's ``tools/train.py`` does, after the CPU
    distributed set-up (``SSLRunner`` applies its runtime itself)."""
    finalize_dataloader_cfgs(cfg)
    setup_cpu_distributed(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def _default_dataloader_cfg(cfg: Config, field: str, defaults: dict,
                            no_pin_memory: bool,
                            no_persistent_workers: bool = False) -> None:
    if cfg.get(field, None) is None:
        return
    loader = copy.deepcopy(ConfigDict(defaults))
    loader.update(cfg[field])
    if no_pin_memory:
        loader['pin_memory'] = False
    if no_persistent_workers:
        loader['persistent_workers'] = False
    cfg[field] = loader


def loader_defaults(cfg: Config, **extra) -> dict:
    """Dataloader defaults of mmpretrain's tools: ``pin_memory`` and ``default_collate``.

    mmdet batches images of different sizes with mmengine's ``pseudo_collate``, so mmdet-scoped
    configs (our detection benchmarks) keep their own collate function.
    """
    defaults = dict(pin_memory=True, **extra)
    if cfg.get('default_scope', 'mmpretrain') != 'mmdet':
        defaults['collate_fn'] = dict(type='default_collate')
    return defaults


def use_amp(cfg: Config) -> str:
    """``--amp``: mmengine's ``AmpOptimWrapper`` (float16, dynamic loss scale) on a GPU;
    :class:`~mmssl_ext.engine.cpu_amp.CPUAmpOptimWrapper` (bfloat16 autocast) on a CPU that runs
    bfloat16 natively; float32 with a logged reason on one that does not.  Returns the wrapper
    type the config now names."""
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        return cfg.optim_wrapper.type
    supported, why = cpu_bf16_support()
    if supported:
        cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
        cfg.optim_wrapper.pop('loss_scale', None)  # bfloat16 needs no loss scaling
        print_log(f'--amp: no CUDA device; bfloat16 autocast on the CPU ({why})',
                  logger='current')
    else:
        print_log(f'--amp: no CUDA device and no native bfloat16 on this CPU ({why}): training '
                  f'in float32 (emulated bfloat16 would be slower)', logger='current',
                  level=logging.WARNING)
    return cfg.optim_wrapper.get('type', 'OptimWrapper')


def merge_train_options(cfg: Config, config: str, cfg_options: Optional[dict] = None,
                        work_dir: Optional[str] = None, resume: Optional[str] = None,
                        amp: bool = False, no_validate: bool = False,
                        auto_scale_lr: bool = False, no_pin_memory: bool = False,
                        no_persistent_workers: bool = False, launcher: str = 'none',
                        channels_last: bool = False) -> Config:
    """``tools/train.py``'s flags merged into ``cfg`` (loaded from ``config``) with mmpretrain's
    semantics, then ``cfg_options``; ``resume='auto'`` resumes from the work dir's latest
    checkpoint; ``amp``: :func:`use_amp`, also on by the config key ``amp = True``;
    ``channels_last``: the config key of that name.  Used
    by ``tools/train.py`` and by steps that train a config (ClusterFit's fit)."""
    if no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    # the config key `amp = True` (or `--cfg-options amp=True|False`) is the flag's default
    if amp or (cfg_options or {}).get('amp', cfg.get('amp', False)):
        use_amp(cfg)
    if channels_last:
        cfg.channels_last = True
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        cfg.resume = True
        cfg.load_from = resume
    if auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    defaults = loader_defaults(cfg, persistent_workers=True)
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _default_dataloader_cfg(cfg, field, defaults, no_pin_memory, no_persistent_workers)
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    add_default_runtime(cfg)
    apply_runtime(cfg)  # the merged config is the one that runs (any runner class)
    return cfg
