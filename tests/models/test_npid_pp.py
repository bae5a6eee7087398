"""NPID++: its Fashion-MNIST config is the NPID config with only the NPID++ changes, and trains
through tools/train.py's path with the per-image bank and the large negative set."""
import numpy as np
import pytest
import torch

from mmssl_ext.cli import train as train_api
from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from mmssl_ext.utils.config import load_config
from tests.configs import recipe
from tests.helpers import REPO

NPID = f'{REPO}/configs/npid/npid_r18-w32_1xb64-3000it_fmnist.py'
NPID_PP = f'{REPO}/configs/npid/npid-pp_r18-w32_1xb64-3000it_fmnist.py'


def _flat(d, prefix=''):
    out = {}
    for k, v in recipe.plain(d).items():
        if isinstance(v, dict):
            out.update(_flat(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


def test_fmnist_config_differs_from_npid_only_in_the_npid_pp_changes():
    npid, pp = load_config(NPID), load_config(NPID_PP)
    a = _flat({k: npid[k] for k in ('model', 'optim_wrapper', 'param_scheduler', 'train_cfg',
                                    'train_dataloader')})
    b = _flat({k: pp[k] for k in ('model', 'optim_wrapper', 'param_scheduler', 'train_cfg',
                                  'train_dataloader')})
    changed = {k for k in a.keys() | b.keys() if a.get(k, '<missing>') != b.get(k, '<missing>')}
    assert changed == {'model.memory_bank.num_negatives',
                       'optim_wrapper.paramwise_cfg.norm_decay_mult'}
    # every other image of the 10000-image bank can be a negative (32000 does not fit)
    assert b['model.memory_bank.num_negatives'] == npid.fmnist_num_train_images - 1 == 9999
    assert a['model.memory_bank.num_negatives'] == 4096
    assert recipe.effective_weight_decay(pp)['norm_weight'] == 0.
    assert recipe.effective_weight_decay(npid)['norm_weight'] == 1e-4


def test_fmnist_config_trains_two_iterations(tiny_tree, tmp_path):
    """The real config shrunk to the tiny tree: the bank of 12 entries with every other entry a
    negative (length - 1, as in the config), 2 iterations, the bank in the checkpoint."""
    work = str(tmp_path / 'npid_pp')
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=12', 'model.memory_bank.length=12',
            'model.memory_bank.num_negatives=11', 'train_cfg.max_iters=2',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']
    runner = train_api.main([NPID_PP, '--work-dir', work, '--cfg-options', *opts])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 2 and np.isfinite(losses).all()
    bank = load_checkpoint_safe(f'{work}/iter_2.pth')['state_dict']['memory_bank.feats']
    assert bank.shape == (12, 128)
    torch.testing.assert_close(bank.norm(dim=1), torch.ones(12))


def test_imagenet_negative_count_on_a_small_bank_is_refused_with_the_fix():
    """NPID++'s 32000 negatives do not fit a 10000-image bank: the bank says so and names the
    largest count it holds (the Fashion-MNIST config uses that count)."""
    from mmssl_ext.models.memories import MemoryBank
    with pytest.raises(ValueError, match=r'num_negatives=32000 must be between 1 and '
                                         r'length - 1 = 9999'):
        MemoryBank(length=10000, num_negatives=32000)
    assert MemoryBank(length=10000, num_negatives=9999).num_negatives == 9999
