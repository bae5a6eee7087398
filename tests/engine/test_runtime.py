"""One runtime for every entry point (configs/_base_/default_runtime.py + SSLRunner).

The same config behaves the same under our tools/train.py and mmpretrain's own
``tools/train.py`` (shipped in its wheel as ``mmpretrain/.mim/tools/train.py``, which is also what
``mim train mmpretrain CONFIG`` runs): exact resume, and the checked image loading's message.
"""
import glob
import json
import os.path as osp
import runpy
import shutil
import sys

import mmpretrain
import pytest
import torch
from mmengine.config import Config

from mmssl_ext.cli import train as train_api
from mmssl_ext.datasets.transforms import ImageLoadError
from mmssl_ext.engine.runner import DEFAULT_SSL_RUNTIME, add_default_runtime, apply_runtime
from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

MMPRETRAIN_TRAIN = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'train.py')
PIRL_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')
N, K = 4, 2  # iterations, checkpoint interval (= the interruption point)


def _training_configs():
    """Every training config (all but the transfer configs and the bases)."""
    return sorted(p for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
                  if '/_base_/' not in p and '/transfer/' not in p)


def test_runtime_base_is_the_default():
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/default_runtime.py'))
    assert cfg.runner_type == 'SSLRunner'
    assert cfg.ssl_runtime.to_dict() == DEFAULT_SSL_RUNTIME


@pytest.mark.parametrize('path', _training_configs(), ids=lambda p: osp.relpath(p, REPO))
def test_every_training_config_inherits_the_runtime(path):
    cfg = load_config(path)
    assert cfg.get('runner_type') == 'SSLRunner', \
        f'{path}: inherit configs/_base_/default_runtime.py'
    assert cfg.ssl_runtime.to_dict() == DEFAULT_SSL_RUNTIME


def test_apply_runtime_once_and_what_it_changes():
    cfg = Config(dict(
        default_scope='mmpretrain',
        ssl_runtime=DEFAULT_SSL_RUNTIME,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[dict(type='SwAVHook', batch_size=4),
                      dict(type='NaNLossCheckHook', keys=[])],
        train_dataloader=dict(num_workers=0, persistent_workers=True,
                              collate_fn=dict(type='default_collate', _scope_='mmpretrain'),
                              dataset=dict(pipeline=[dict(type='LoadImageFromFile')]))))
    done = apply_runtime(cfg)
    assert len(done) == 4
    # the listed NaNLossCheckHook (switched off by keys=[]) is kept as the config has it
    assert [h['type'] for h in cfg.custom_hooks] == [
        'ResumableSwAVHook', 'NaNLossCheckHook', 'MemoryBankSizeCheckHook', 'RNGStateHook',
        'CollapseMonitorHook']
    assert cfg.custom_hooks[1]['keys'] == []
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.train_dataloader.dataset.pipeline[0].type == 'LoadImageFromFileChecked'
    assert cfg.train_dataloader.persistent_workers is False
    assert '_scope_' not in cfg.train_dataloader.collate_fn
    assert cfg.ssl_runtime.applied is True
    cfg.custom_hooks = cfg.custom_hooks[:1]  # an edit after the runtime was applied stands
    assert apply_runtime(cfg) == [] and len(cfg.custom_hooks) == 1
    with pytest.raises(KeyError, match=r"unknown keys \['atomic'\].*default_runtime.py"):
        apply_runtime(Config(dict(ssl_runtime=dict(atomic=True))))


def test_a_config_without_the_runtime_base_gets_it_logged(monkeypatch):
    import mmssl_ext.engine.runner as runner_mod
    logged = []
    monkeypatch.setattr(runner_mod, 'print_log', lambda msg, **kw: logged.append(msg))
    cfg = Config(dict(model=dict(type='x')))
    assert add_default_runtime(cfg)
    assert cfg.runner_type == 'SSLRunner' and cfg.ssl_runtime.to_dict() == DEFAULT_SSL_RUNTIME
    assert len(logged) == 1 and 'does not inherit configs/_base_/default_runtime.py' in logged[0]
    assert not add_default_runtime(cfg)  # once
    other = Config(dict(runner_type='FlexibleRunner'))
    add_default_runtime(other)
    assert other.runner_type == 'FlexibleRunner'  # a config's own runner class is kept


def _tiny_config(tmp_path, tree, name, interrupt_at=None):
    """A config file inheriting the real PIRL Fashion-MNIST config, shrunk to seconds."""
    hooks = '' if interrupt_at is None else \
        f"custom_hooks = [dict(type='_InterruptAfterHook', iters={interrupt_at})]\n"
    path = tmp_path / f'{name}.py'
    path.write_text(
        f"_base_ = [{PIRL_CFG!r}]\n"
        f"train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,\n"
        f"                        dataset=dict(data_root={tree!r}, indices=12))\n"
        f"model = dict(memory_bank=dict(length=24, num_negatives=16))\n"
        f"train_cfg = dict(max_iters={N})\n"
        f"default_hooks = dict(checkpoint=dict(interval={K}), logger=dict(interval=1))\n"
        f"log_processor = dict(window_size=1)\n"
        f"experiment_name = {name!r}\n" + hooks)
    return str(path)


def _mmpretrain_train(argv, monkeypatch):
    """mmpretrain's own tools/train.py, in this process (``__main__`` is not run on load)."""
    script = runpy.run_path(MMPRETRAIN_TRAIN, run_name='mmpretrain_train')
    monkeypatch.setattr(sys, 'argv', [MMPRETRAIN_TRAIN] + argv)
    script['main']()


def _losses(work):
    [log] = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    with open(log) as f:
        rows = [json.loads(line) for line in f]
    return {r['step']: r['loss'] for r in rows if 'loss' in r}


@pytest.mark.slow
def test_mmpretrain_train_script_resumes_exactly(tiny_tree, tmp_path, monkeypatch):
    """A short PIRL run through mmpretrain's train script, interrupted after K iterations and
    resumed with --resume, equals the uninterrupted run: losses and final weights, bitwise."""
    import tests.cli.test_exact_resume  # noqa: F401  registers _InterruptAfterHook
    assert osp.isfile(MMPRETRAIN_TRAIN), MMPRETRAIN_TRAIN
    full = str(tmp_path / 'full')
    _mmpretrain_train([_tiny_config(tmp_path, tiny_tree, 'full'), '--work-dir', full],
                      monkeypatch)
    work = str(tmp_path / 'cut')
    _mmpretrain_train([_tiny_config(tmp_path, tiny_tree, 'cut', interrupt_at=K),
                       '--work-dir', work], monkeypatch)
    assert osp.isfile(osp.join(work, f'iter_{K}.pth'))
    assert not osp.exists(osp.join(work, f'iter_{N}.pth'))
    ckpt = load_checkpoint_safe(osp.join(work, f'iter_{K}.pth'))
    assert 'rng_state' in ckpt  # RNGStateHook came from the config, not from our CLI
    shutil.rmtree(glob.glob(osp.join(work, '2*'))[0])  # the interrupted run's log
    _mmpretrain_train([_tiny_config(tmp_path, tiny_tree, 'cut2'), '--work-dir', work,
                       '--resume'], monkeypatch)
    ref, got = _losses(full), _losses(work)
    assert sorted(got) == list(range(K + 1, N + 1))
    assert all(got[i] == ref[i] for i in got), (got, ref)
    a = load_checkpoint_safe(osp.join(full, f'iter_{N}.pth'))['state_dict']
    b = load_checkpoint_safe(osp.join(work, f'iter_{N}.pth'))['state_dict']
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), 'final weights differ'


@pytest.mark.slow
def test_both_train_scripts_refuse_a_corrupt_image_with_one_message(
        tiny_tree, tmp_path, monkeypatch):
    tree = str(tmp_path / 'tree')
    shutil.copytree(tiny_tree, tree)
    with open(osp.join(tree, 'meta', 'train.txt')) as f:
        first = f.readline().split()[0]
    bad = osp.join(tree, 'train', first)
    with open(bad, 'r+b') as f:
        f.truncate(40)
    cfg = _tiny_config(tmp_path, tree, 'corrupt')
    opts = ['--cfg-options', 'train_dataloader.sampler.shuffle=False']
    messages = []
    for run in ('ours', 'mmpretrain'):
        with pytest.raises(ImageLoadError) as e:
            argv = [cfg, '--work-dir', str(tmp_path / run)] + opts
            if run == 'ours':
                train_api.main(argv)
            else:
                _mmpretrain_train(argv, monkeypatch)
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert bad in messages[0] and 'truncated, corrupt or not an image' in messages[0]
    assert osp.join(tree, 'meta', 'train.txt') in messages[0]


def test_expected_mmengine_notices_are_info_and_others_stay_warnings():
    import logging

    from mmssl_ext.engine.runner import ExpectedNoticesAsInfo, finalize_dataloader_cfgs

    def record(msg):
        return logging.LogRecord('mmengine', logging.WARNING, __file__, 1, msg, None, None)

    notice = record('Reach the end of the dataloader, it will be restarted and continue')
    other = record('MemoryBankSizeCheckHook: the memory bank is longer than the data set')
    f = ExpectedNoticesAsInfo()
    assert f.filter(notice) and f.filter(other)
    assert (notice.levelno, notice.levelname) == (logging.INFO, 'INFO')
    assert (other.levelno, other.levelname) == (logging.WARNING, 'WARNING')
    cfg = Config(dict(train_dataloader=dict(pin_memory=True, num_workers=2)))
    finalize_dataloader_cfgs(cfg)
    assert cfg.train_dataloader.pin_memory is torch.cuda.is_available()
