"""A misspelled config key: tools/train.py names the key path and the closest valid argument
instead of Python's bare "__init__() got an unexpected keyword argument"."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmssl_ext.cli import train as train_api
from mmssl_ext.registry import DATASETS
from mmssl_ext.utils.config_errors import (ConfigKeyError, accepted_arguments,
                                           explain_config_errors, explain_type_error)
from tests.helpers import MOCO_FMNIST_CFG, REPO, tiny_moco_options

PIRL_FMNIST_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')


def test_misspelled_key_in_a_config_file(tiny_tree, tmp_path):
    cfg = tmp_path / 'typo.py'
    cfg.write_text(f"_base_ = [{MOCO_FMNIST_CFG!r}]\nmodel = dict(backbone=dict(dpeth=18))\n")
    work = str(tmp_path / 'w')
    with pytest.raises(ConfigKeyError) as e:
        train_api.main([str(cfg), '--work-dir', work, '--cfg-options',
                        *tiny_moco_options(tiny_tree, work)])
    msg = str(e.value)
    assert 'unknown config key `model.backbone.dpeth`' in msg
    assert "ResNet takes no argument 'dpeth'; did you mean 'depth'?" in msg
    assert str(cfg) in msg  # the file is named
    assert isinstance(e.value, TypeError)  # callers catching TypeError still do
    assert "unexpected keyword argument 'dpeth'" in str(e.value.__cause__)


def test_misspelled_key_in_cfg_options(tiny_tree, tmp_path):
    work = str(tmp_path / 'w')
    with pytest.raises(ConfigKeyError, match=r"unknown config key `model\.memory_bnak`.*PIRL "
                       r"takes no argument 'memory_bnak'; did you mean 'memory_bank'\?"):
        train_api.main([PIRL_FMNIST_CFG, '--work-dir', work, '--cfg-options',
                        f'train_dataloader.dataset.data_root={tiny_tree}',
                        'train_dataloader.num_workers=0', 'model.memory_bnak.length=3'])


def test_misspelled_optimizer_key_found_when_training_starts(tiny_tree, tmp_path):
    """The optimizer is built inside runner.train(): that error is explained as well."""
    work = str(tmp_path / 'w')
    with pytest.raises(ConfigKeyError, match=r"`optim_wrapper\.optimizer\.momentun`.*SGD takes "
                       r"no argument 'momentun'; did you mean 'momentum'\?"):
        train_api.main([MOCO_FMNIST_CFG, '--work-dir', work, '--cfg-options',
                        *tiny_moco_options(tiny_tree, work),
                        'optim_wrapper.optimizer.momentun=0.9'])


def _raise_from_build(cfg, build):
    with pytest.raises(ConfigKeyError) as e:
        with explain_config_errors(cfg):
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                build()
    return str(e.value)


def test_dataset_transform_and_dataloader_keys(tiny_tree):
    cfg = Config.fromfile(MOCO_FMNIST_CFG)
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': tiny_tree,
                         'train_dataloader.dataset.ann_fiel': 'meta/train.txt'})
    # the error comes from BaseDataset (ImageNet passes **kwargs on); ann_file is found there
    msg = _raise_from_build(cfg, lambda: DATASETS.build(cfg.train_dataloader.dataset))
    assert '`train_dataloader.dataset.ann_fiel`' in msg and "did you mean 'ann_file'" in msg

    cfg = Config.fromfile(MOCO_FMNIST_CFG)
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': tiny_tree,
                         'train_dataloader.dataset.pipeline.1.num_veiws': 2})
    msg = _raise_from_build(cfg, lambda: DATASETS.build(cfg.train_dataloader.dataset))
    assert '`train_dataloader.dataset.pipeline[1].num_veiws`' in msg
    assert "MultiView takes no argument 'num_veiws'; did you mean 'num_views'?" in msg

    cfg = Config.fromfile(MOCO_FMNIST_CFG)
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': tiny_tree,
                         'train_dataloader.num_workers': 0, 'train_dataloader.batch_sise': 4})
    loader = cfg.train_dataloader.copy()
    loader.pop('persistent_workers')
    msg = _raise_from_build(cfg, lambda: train_api.Runner.build_dataloader(loader))
    assert '`train_dataloader.batch_sise`' in msg and "did you mean 'batch_size'" in msg


def test_other_type_errors_pass_through_unchanged():
    cfg = Config(dict(model=dict(type='ResNet', depth=18)))
    err = TypeError("ResNet.__init__() got an unexpected keyword argument 'not_in_cfg'")
    assert explain_type_error(err, cfg) is None
    assert explain_type_error(TypeError('unsupported operand'), cfg) is None
    with pytest.raises(TypeError, match='unsupported operand') as e:
        with explain_config_errors(cfg):
            raise TypeError('unsupported operand')
    assert type(e.value) is TypeError


def test_accepted_arguments_follow_kwargs_to_the_base_class():
    from mmpretrain.datasets import ImageNet
    args = accepted_arguments(ImageNet)
    assert 'split' in args and 'ann_file' in args and 'pipeline' in args
