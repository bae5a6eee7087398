"""Checkpoints without backbone weights or of another architecture are refused with the file named.

Gaps left by tests/cli/test_knn_eval_tool.py (another depth) and
tests/engine/test_pretrained_check_hook.py (partial / mismatched keys): another *width* through the
tools/knn_eval.py CLI, and a file holding only ``head.*`` keys (knn_eval's loader, the hook, and a
benchmark config run by tools/train.py)."""
import os
import os.path as osp

import pytest
import torch

from mmssl_ext.cli import knn_eval
from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.hooks.pretrained_check import PretrainedCheckHook, PretrainedKeysError
from tests.engine.test_pretrained_check_hook import Model, _init, _runner, _save
from tests.helpers import REPO

PIRL_FMNIST_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')
LINEAR_CFG = osp.join(REPO, 'configs/transfer/linear-probe_r18-w32_1xb256-10e_fmnist.py')


def test_knn_eval_cli_refuses_a_checkpoint_of_another_width(
        tiny_tree, tiny_moco_ckpt, tmp_path, capsys):
    """The MoCo v2 checkpoint is a full-width ResNet-18; the PIRL config a half-width one."""
    with pytest.raises(ValueError) as e:
        knn_eval.main([PIRL_FMNIST_CFG, tiny_moco_ckpt, '--cfg-options',
                       f'knn_eval.train_dataloader.dataset.data_root={tiny_tree}',
                       f'knn_eval.val_dataloader.dataset.data_root={tiny_tree}',
                       'model.memory_bank.length=24', 'model.memory_bank.num_negatives=8'])
    msg = str(e.value)
    assert f'{tiny_moco_ckpt} does not fit the ResNet backbone' in msg
    assert 'of another shape' in msg and '(64, 3, 7, 7) in the file, (32, 3, 7, 7) in the model' \
        in msg
    assert 'random_init' not in capsys.readouterr().out  # nothing was evaluated


def test_head_only_checkpoint_is_refused(tmp_path):
    src = Model()
    path = _save(tmp_path, {'head.weight': src.head.weight.detach(),
                            'head.bias': src.head.bias.detach()}, name='head_only.pth')
    # tools/knn_eval.py's loader
    with pytest.raises(ValueError, match=r'head_only\.pth does not fit the Net backbone of the '
                       r'config: 7 weights missing.*not a backbone checkpoint'):
        knn_eval.load_backbone_weights(Model(), path)
    # a backbone-only init (no prefix): mmengine loads nothing and only warns; the hook refuses
    model = _init(Model(dict(type='Pretrained', checkpoint=path)))
    with pytest.raises(PretrainedKeysError) as e:
        PretrainedCheckHook().before_train(_runner(model))
    msg = str(e.value)
    assert path in msg and 'weights of the model are not in the file' in msg
    assert 'conv.weight' in msg
    # the file itself is untouched
    assert set(torch.load(path)['state_dict']) == {'head.weight', 'head.bias'}


def test_train_tool_names_a_head_only_checkpoint_of_a_benchmark(tiny_tree, tmp_path):
    """With prefix='backbone.' mmengine fails first, inside the weight initialisation, with a bare
    "AssertionError: backbone. is not in the pretrained model"; tools/train.py names the file,
    the config key and what the file holds instead."""
    src = Model()
    path = _save(tmp_path, {'head.fc.weight': src.head.weight.detach()}, name='head_only.pth')
    work = str(tmp_path / 'w')
    opts = [f'{s}_dataloader.dataset.data_root={tiny_tree}' for s in ('train', 'val', 'test')]
    opts += [f'{s}_dataloader.num_workers=0' for s in ('train', 'val', 'test')]
    with pytest.raises(PretrainedKeysError) as e:
        train_api.main([LINEAR_CFG, '--work-dir', work, '--cfg-options', *opts,
                        f'model.backbone.init_cfg.checkpoint={path}'])
    msg = str(e.value)
    assert f"{path} holds no weights under the prefix 'backbone.'" in msg
    assert 'model.backbone.init_cfg' in msg and 'its weights start with head.' in msg
    assert '--cfg-options model.backbone.init_cfg.prefix=None' in msg
    assert 'is not in the pretrained model' in str(e.value.__cause__)
    assert not [f for f in os.listdir(work) if f.endswith('.pth')]
