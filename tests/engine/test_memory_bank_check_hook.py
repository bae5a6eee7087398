"""MemoryBankSizeCheckHook: a memory bank shorter than the training set fails before iteration 1
(not mid-run at the first out-of-range index), naming both sizes and the config key."""
import itertools
import os
import os.path as osp
from types import SimpleNamespace

import pytest
import torch.nn as nn
from mmengine.dataset import ConcatDataset, RepeatDataset

from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.hooks import MemoryBankSizeCheckHook
from mmssl_ext.engine.hooks.memory_bank_check import num_sample_indices
from mmssl_ext.models.memories.memory_bank import MemoryBank
from tests.helpers import REPO

PIRL_FMNIST_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')


_run_ids = itertools.count()


def _pirl_argv(tree, work, length, max_iters=0):
    return [PIRL_FMNIST_CFG, '--work-dir', work, '--cfg-options',
            f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            f'model.memory_bank.length={length}', 'model.memory_bank.num_negatives=8',
            f'train_cfg.max_iters={max_iters}', 'default_hooks.checkpoint.interval=1',
            # a logger of its own: two runners started in the same second would otherwise share
            # mmengine's timestamp-named logger, which writes to the first test's captured stdout
            f'experiment_name=bank_check_{next(_run_ids)}']


def test_train_tool_refuses_a_bank_shorter_than_the_training_set(tiny_tree, tmp_path):
    work = str(tmp_path / 'work')
    # the tiny tree has 24 training images; a bank of 10 would fail at the first index >= 10
    with pytest.raises(ValueError) as e:
        train_api.main(_pirl_argv(tiny_tree, work, length=10, max_iters=4))
    msg = str(e.value)
    assert 'model.memory_bank has length 10' in msg and 'has 24 samples' in msg
    assert '--cfg-options model.memory_bank.length=24' in msg
    # stopped before the first iteration: nothing was trained or saved
    assert not [f for f in os.listdir(work) if f.endswith('.pth')]


def test_a_longer_bank_only_warns(tiny_tree, tmp_path, capsys):
    runner = train_api.main(_pirl_argv(tiny_tree, str(tmp_path / 'w'), length=30))
    assert runner.iter == 0
    out = capsys.readouterr().out
    assert 'model.memory_bank has length 30 for a training set of 24 samples' in out
    assert 'set model.memory_bank.length=24' in out


def _runner(model, dataset):
    return SimpleNamespace(model=model, train_dataloader=SimpleNamespace(dataset=dataset))


class _Indexed:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_hook_unit_names_nested_banks_and_unwraps_datasets():
    model = nn.Module()
    model.head = nn.Module()
    model.head.bank = MemoryBank(length=5, feat_dim=4, num_negatives=2)
    with pytest.raises(ValueError, match=r'model\.head\.bank has length 5 .* has 6 samples.*'
                       r'model\.head\.bank\.length=6'):
        MemoryBankSizeCheckHook().before_train(_runner(model, _Indexed(6)))
    MemoryBankSizeCheckHook().before_train(_runner(model, _Indexed(5)))
    MemoryBankSizeCheckHook().before_train(_runner(nn.Linear(2, 2), _Indexed(10 ** 6)))
    # repeated / concatenated datasets hand out the indices of their parts
    rep = RepeatDataset.__new__(RepeatDataset)
    rep.dataset, rep.times = _Indexed(5), 3
    assert num_sample_indices(rep) == 5
    cat = ConcatDataset.__new__(ConcatDataset)
    cat.datasets = [_Indexed(4), _Indexed(5)]
    assert num_sample_indices(cat) == 5
