"""Exact resume, per method family: a run interrupted after K iterations and resumed with --resume
gives the same per-iteration losses and bit-identical final weights as an uninterrupted run.

Each family runs the real config (shrunk) three times through tools/train.py's path
(parse_args + load_config + merge_args (which adds RNGStateHook) + build_runner), on the CPU with
num_workers=0, batch 4:
  A: N=6 iterations uninterrupted (checkpoint every K=3);
  B: the same run interrupted after iteration 3 (the train loop is stopped right after the
     iter_3 checkpoint, max_iters stays 6), then resumed in a fresh Runner with --resume to 6.
Losses of iterations 4-6 come from the logs (<log_dir>/vis_data/scalars.json, window size 1);
the final state dicts (model incl. buffers: memory bank, MoCo queue + pointer, momentum encoder,
BatchNorm statistics) and the optimizer states are compared with torch.equal.  The data sets are
shrunk so that batch 4 lands on an epoch boundary of the DefaultSampler (PIRL, MoCo): the first
batch after the resume starts a new epoch, so the sampler's epoch / position is covered too.

Controls resume the same checkpoint without RNGStateHook ('none': mmengine's resume alone) or with
a naive hook that restores the generators before mmengine's dataloader advance ('before_advance')
and check that the losses then differ, i.e. that each comparison above can fail.
"""
import itertools
import json
import os.path as osp
import shutil

import pytest
import torch
from mmengine.hooks import Hook

from mmssl_ext import clusterfit
from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.hooks.rng_state import (RNG_STATE_KEY, RNGStateHook,
                                              add_exact_resume_hooks, get_rng_state,
                                              set_rng_state)
from mmssl_ext.registry import HOOKS
from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from mmssl_ext.utils.config import load_config
from tests.helpers import MOCO_FMNIST_CFG, REPO, tiny_moco_options

PIRL_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')
FIT_CFG = osp.join(REPO, 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py')
N, K = 6, 3  # iterations, checkpoint interval (= the interruption point)
_COMMON = [f'train_cfg.max_iters={N}', f'default_hooks.checkpoint.interval={K}',
           'default_hooks.logger.interval=1', 'log_processor.window_size=1']
_NOT_COMPARED = {'step', 'time', 'data_time', 'eta', 'memory'}
_run_ids = itertools.count()


@HOOKS.register_module(force=True)
class _InterruptAfterHook(Hook):
    """Stops the train loop after iteration ``iters`` (after its checkpoint): a crash / kill."""
    priority = 'LOWEST'

    def __init__(self, iters: int):
        self.iters = iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 >= self.iters:
            runner.train_loop.stop_training = True


@HOOKS.register_module(force=True)
class _RestoreBeforeAdvanceHook(RNGStateHook):
    """The naive fix (a control): restores the generators in before_train, i.e. BEFORE mmengine
    re-fetches the k trained batches, whose pipeline then consumes them again."""

    def before_train(self, runner):
        state = self._state_for_this_rank(runner)
        if state is not None:
            set_rng_state(state)


_CONTROL_HOOKS = dict(none=None, before_advance='_RestoreBeforeAdvanceHook')


def _train(config, work, opts, resume=None, control=None, interrupt_at=None, extra=None):
    """tools/train.py's path; ``control`` replaces add_exact_resume_hooks by no hook ('none') or
    the naive hook ('before_advance'); ``extra``: a dict merged into the config last."""
    argv = [config, '--work-dir', work]
    if resume is not None:
        argv += ['--resume'] + ([resume] if resume != 'auto' else [])
    args = train_api.parse_args(argv + ['--cfg-options', *opts])
    cfg = train_api.merge_args(load_config(args.config), args)
    if extra:
        cfg.merge_from_dict(extra)
    if control is None:
        add_exact_resume_hooks(cfg)  # merge_args adds it already: must stay a single hook
        assert [h['type'] for h in cfg.custom_hooks].count('RNGStateHook') == 1
    else:  # the controls run without tools/train.py's RNGStateHook
        cfg.custom_hooks = [h for h in cfg.custom_hooks if h.get('type') != 'RNGStateHook']
    if control is not None and _CONTROL_HOOKS[control] is not None:
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            dict(type=_CONTROL_HOOKS[control])]
    if interrupt_at is not None:
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            dict(type='_InterruptAfterHook', iters=interrupt_at)]
    # unique logger / visualizer instance names even when two runners start in the same second
    cfg.experiment_name = f'exact_resume_{next(_run_ids)}'
    runner = train_api.build_runner(cfg)
    runner.train()
    return runner


def _logged(runner):
    """{iteration: {key: value}} of the scalars the run logged (loss terms, lr, ...)."""
    out = {}
    with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
        for line in f:
            row = json.loads(line)
            if 'loss' in row:
                out[row['step']] = {k: v for k, v in row.items() if k not in _NOT_COMPARED}
    return out


def _model(runner):
    return runner.model.module if hasattr(runner.model, 'module') else runner.model


def _differing(a, b):
    assert a.keys() == b.keys()
    return [k for k in a if not (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]


def _check_exact_resume(config, opts, tmp_path, buffers=(), controls=('none', 'before_advance'),
                        extra=None):
    # A: uninterrupted
    full = _train(config, str(tmp_path / 'full'), opts, extra=extra)
    ref = _logged(full)
    assert sorted(ref) == list(range(1, N + 1))
    # B: interrupted after K, resumed (auto: latest checkpoint of the work dir) to N
    work = str(tmp_path / 'interrupted')
    first = _train(config, work, opts, interrupt_at=K, extra=extra)
    assert first.iter == K and osp.isfile(osp.join(work, f'iter_{K}.pth'))
    assert not osp.exists(osp.join(work, f'iter_{2 * K}.pth'))
    assert {i: ref[i] for i in range(1, K + 1)} == _logged(first)

    # a copy for the control below (max_keep_ckpts may delete the original)
    ckpt_path = shutil.copy(osp.join(work, f'iter_{K}.pth'), str(tmp_path / f'iter_{K}.pth'))
    ckpt = load_checkpoint_safe(ckpt_path)  # torch.load(weights_only=True) + our allow-list
    rng = ckpt[RNG_STATE_KEY]
    assert rng['world_size'] == 1 and len(rng['ranks']) == 1
    assert {'python', 'numpy', 'torch'} <= set(rng['ranks'][0])
    for name in buffers:
        assert name in ckpt['state_dict'], f'{name} is not in the checkpoint'

    resumed = _train(config, work, opts, resume='auto', extra=extra)
    assert resumed.iter == N
    got = _logged(resumed)
    assert sorted(got)[-(N - K):] == list(range(K + 1, N + 1))
    for i in range(K + 1, N + 1):
        assert got[i] == ref[i], f'iteration {i}: resumed {got[i]} != uninterrupted {ref[i]}'
    diff = _differing(_model(full).state_dict(), _model(resumed).state_dict())
    assert not diff, f'{len(diff)} tensors of the final state dict differ, e.g. {diff[:5]}'
    opt_a = full.optim_wrapper.optimizer.state_dict()['state']
    opt_b = resumed.optim_wrapper.optimizer.state_dict()['state']
    assert opt_a.keys() == opt_b.keys()
    for pid in opt_a:
        assert not _differing(opt_a[pid], opt_b[pid]), f'optimizer state {pid} differs'

    # controls: the same comparison fails for mmengine's resume alone ('none') and for a hook that
    # restores before the dataloader advance ('before_advance')
    for control in controls:
        other = _logged(_train(config, str(tmp_path / control), opts, resume=ckpt_path,
                               control=control, extra=extra))
        assert any(other[i]['loss'] != ref[i]['loss'] for i in range(K + 1, N + 1)), \
            f'control {control!r}: the resumed losses should differ (the test could not fail)'


def test_pirl_exact_resume(tiny_tree, tmp_path):
    """Memory bank (buffer), jigsaw permutation + patch jitter draws (np.random), negatives
    (torch's generator), image-view augmentations."""
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=12', 'model.memory_bank.length=24',
            'model.memory_bank.num_negatives=16', *_COMMON]
    _check_exact_resume(PIRL_CFG, opts, tmp_path, buffers=['memory_bank.feats'])


def test_mocov2_exact_resume(tiny_tree, tmp_path):
    """mmpretrain's MoCo v2: queue + pointer (buffers), momentum encoder (sub-module)."""
    opts = tiny_moco_options(tiny_tree, str(tmp_path), max_iters=N, ckpt_interval=K) + [
        'train_dataloader.dataset.indices=12', 'log_processor.window_size=1']
    _check_exact_resume(MOCO_FMNIST_CFG, opts, tmp_path,
                        buffers=['queue', 'queue_ptr', 'encoder_k.steps',
                                 'encoder_k.module.0.conv1.weight'], controls=('none', ))


@pytest.mark.parametrize('mixup', [False, True], ids=['plain', 'mixup'])
def test_clusterfit_fit_exact_resume(tiny_tree, tmp_path, mixup):
    """ClusterFit's fit step: an ImageClassifier on a pseudo-label file (InfiniteSampler).

    As configured, nothing in this family draws random numbers outside the data pipeline, and
    mmengine's advance replays the pipeline's draws (num_workers=0), so mmengine's resume alone is
    already exact here: only the naive restore-before-advance control can fail.  With a batch
    augmentation in the model (mmpretrain's Mixup: np.random.beta + torch.randperm in the data
    preprocessor, a common classification recipe) the hook is needed: mmengine's resume alone
    then fails.
    """
    with open(osp.join(tiny_tree, 'meta', 'train.txt')) as f:
        paths = [line.split()[0] for line in f]
    clusters = tmp_path / 'clusters'
    clusters.mkdir()
    clusterfit.write_annotation(str(clusters / clusterfit.ANN_FILE), paths,
                                [(i * 7) % 4 for i in range(len(paths))])
    probe = load_config(FIT_CFG)
    probe.merge_from_dict({'train_dataloader.dataset.data_root': tiny_tree})
    fit = clusterfit.fit_overrides(str(clusters), probe)  # what `tools/clusterfit.py fit` merges
    opts = [f'{k}={v}' for k, v in fit.items()] + [
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0', *_COMMON]
    extra = dict(model=dict(train_cfg=dict(augments=[dict(type='Mixup', alpha=0.4)]))) \
        if mixup else None
    _check_exact_resume(FIT_CFG, opts, tmp_path, buffers=['head.fc.weight'], extra=extra,
                        controls=('none', ) if mixup else ('before_advance', ))


# ------------------------------------------------------------------------------ the pieces


def _draw():
    import random

    import numpy as np
    return (random.random(), random.gauss(0, 1), float(np.random.rand()),
            float(np.random.randn()), torch.rand(3).tolist())


def test_rng_state_round_trips_through_a_safe_checkpoint(tmp_path):
    import random

    import numpy as np
    random.gauss(0, 1)  # leave a cached gaussian in python's and numpy's generator
    np.random.randn()
    state = get_rng_state()
    expected = _draw()
    path = str(tmp_path / 'c.pth')
    torch.save({RNG_STATE_KEY: dict(world_size=1, ranks=[state])}, path)
    loaded = load_checkpoint_safe(path)[RNG_STATE_KEY]['ranks'][0]
    _draw()
    set_rng_state(loaded)
    assert _draw() == expected


def test_validation_does_not_shift_the_training_stream():
    hook = RNGStateHook()
    state = get_rng_state()
    expected = _draw()
    set_rng_state(state)
    hook.before_val(None)
    _draw()  # e.g. a DataLoader iterator drawing its base seed
    hook.after_val(None)
    assert _draw() == expected


def test_add_exact_resume_hooks_is_idempotent():
    from mmengine.config import Config
    cfg = Config(dict(custom_hooks=[dict(type='KNNEvalHook')]))
    add_exact_resume_hooks(add_exact_resume_hooks(cfg))
    assert [h['type'] for h in cfg.custom_hooks] == ['KNNEvalHook', 'RNGStateHook']
    cfg = Config(dict())
    assert add_exact_resume_hooks(cfg).custom_hooks == [dict(type='RNGStateHook')]
    from mmengine.registry import HOOKS as ROOT
    assert ROOT.get('RNGStateHook') is RNGStateHook


@pytest.mark.parametrize('iters', [0, 2])
def test_hook_restores_only_when_resuming(iters):
    """load_from (fine-tuning, runner.iter == 0) keeps the fresh seed; a resume restores after the
    advance, i.e. on the first fetch after `iters` skipped batches."""
    class _Loop:
        dataloader_iterator = iter(range(10))

    class _Runner:
        iter = iters
        train_loop = _Loop()

    saved = get_rng_state()
    expected = _draw()
    hook = RNGStateHook()
    hook.after_load_checkpoint(_Runner, {RNG_STATE_KEY: dict(world_size=1, ranks=[saved]),
                                         'meta': dict(iter=iters)})
    hook.before_train(_Runner)
    loop = _Runner.train_loop
    if iters == 0:
        assert not hasattr(loop.dataloader_iterator, '_state')
        return
    assert [next(loop.dataloader_iterator) for _ in range(iters)] == [0, 1]
    _draw()  # the advance runs the pipeline, consuming the generators
    assert next(loop.dataloader_iterator) == 2
    assert _draw() == expected
    assert next(loop.dataloader_iterator) == 3  # the loop's own iterator is back
    assert not hasattr(loop.dataloader_iterator, '_state')


def test_checkpoint_due_follows_checkpoint_hook():
    """DDP gathers the ranks' states only when CheckpointHook is about to save (it runs just
    after RNGStateHook: priority 85 < VERY_LOW = 90)."""
    from mmengine.hooks import CheckpointHook
    from mmengine.runner.priority import get_priority

    from mmssl_ext.engine.hooks.rank_state import checkpoint_due

    class _Runner:
        hooks = [CheckpointHook(interval=3, by_epoch=False)]
        max_iters = 7
        iter = 0

    due = []
    for i in range(7):
        _Runner.iter = i  # after_train_iter of iteration i + 1
        due.append(checkpoint_due(_Runner, by_epoch=False))
    assert due == [False, False, True, False, False, True, True]  # every 3, and the last
    assert not checkpoint_due(_Runner, by_epoch=True)
    assert get_priority(RNGStateHook.priority) < get_priority(CheckpointHook.priority)


def test_rotation_pretext_exact_resume(tiny_tree, tmp_path):
    """Pretext family: rotation prediction (``RandomRotation90`` draws the angle per image in the
    pipeline, the label is the angle).  As for the fit step, the pipeline's draws are replayed by
    mmengine's advance, so the naive restore-before-advance control is the one that fails."""
    cfg = osp.join(REPO, 'configs/clusterfit/rotation_r18-w32_1xb64-3000it_fmnist.py')
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            *_COMMON]
    _check_exact_resume(cfg, opts, tmp_path, buffers=['head.fc.weight'],
                        controls=('before_advance', ))
