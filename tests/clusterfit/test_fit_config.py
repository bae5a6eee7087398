"""The fit / distill step prepares its config directly (loaded once, no argparse round trip), and
the result is the config the old path built: ``tools/train.py``'s ``parse_args`` + ``merge_args``
with the step's overrides and then the user's as ``--cfg-options``."""
import json
import os.path as osp

import numpy as np
import pytest

from mmssl_ext import clusterfit as cf
from mmssl_ext.cli import train as train_api
from mmssl_ext.cli.clusterfit import train_options
from mmssl_ext.clusterfit import fit_step
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

FIT_CFG = osp.join(REPO, 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py')
DISTILL_CFG = osp.join(REPO, 'configs/clusterfit/clusterfit-distill_r18-w32_1xb64-3000it_fmnist.py')
USER_OPTS = {'train_dataloader.batch_size': 4, 'train_dataloader.num_workers': 0,
             'train_cfg.max_iters': 2, 'default_hooks.checkpoint.interval': 2}
TRAIN_ARGS = ['--resume', '--no-pin-memory']


def _old_path(config, step_overrides, work_dir, cfg_options, train_args):
    """What ``train_with_overrides`` of the old ``apis/clusterfit.py`` built, without training:
    the step's overrides and then the user's, through tools/train.py's argument parser."""
    opts = dict(step_overrides)
    opts.update(cfg_options)
    args = train_api.parse_args([config, '--work-dir', work_dir] + train_args)
    args.cfg_options = opts
    return train_api.merge_args(load_config(config), args)


def _data(tree):
    return dict(data_root_abs=tree, data_prefix='train', img_prefix_abs=osp.join(tree, 'train'))


def _rows(tree):
    with open(osp.join(tree, 'meta', 'train.txt')) as f:
        return [line.split()[0] for line in f]


def _same(old, new):
    assert new.to_dict() == old.to_dict()
    assert new.pretty_text == old.pretty_text


def test_fit_config_equals_the_old_paths(tiny_tree, tmp_path, monkeypatch):
    clusters = tmp_path / 'clusters'
    paths = _rows(tiny_tree)
    cf.write_annotation(str(clusters / cf.ANN_FILE), paths, [i % 3 for i in range(len(paths))])
    (clusters / cf.SUMMARY_FILE).write_text(json.dumps(dict(k=3, data=_data(tiny_tree))))
    work = str(tmp_path / 'work')

    probe = load_config(FIT_CFG)
    probe.merge_from_dict(USER_OPTS)
    old = _old_path(FIT_CFG, cf.fit_overrides(str(clusters), probe), work, USER_OPTS,
                    TRAIN_ARGS)

    loads = []
    real_load = fit_step.load_config
    monkeypatch.setattr(fit_step, 'load_config', lambda path: loads.append(path) or real_load(path))
    new = cf.prepare_fit_config(FIT_CFG, str(clusters),
                                train_options(FIT_CFG, work, USER_OPTS, TRAIN_ARGS))
    assert loads == [FIT_CFG]  # loaded once
    _same(old, new)
    assert new.model.head.num_classes == 3 and new.resume is True and new.work_dir == work
    assert new.train_dataloader.pin_memory is False
    assert new.train_dataloader.dataset.ann_file == str(clusters / cf.ANN_FILE)


def test_distill_config_equals_the_old_paths(tiny_tree, tmp_path):
    soft = tmp_path / 'soft'
    paths = _rows(tiny_tree)
    probs = np.full((len(paths), 3), 1 / 3, dtype=np.float32)
    cf.formats.write_files(str(soft), [
        (cf.SOFT_TARGETS_FILE, cf.formats.npy_bytes(probs)),
        (cf.SOFT_ANN_FILE, cf.formats.annotation_bytes(paths, [0] * len(paths))),
        (cf.SOFT_SUMMARY_FILE, cf.formats.json_bytes(dict(temperature=2.0,
                                                          data=_data(tiny_tree))))])
    work = str(tmp_path / 'work')
    probe = load_config(DISTILL_CFG)
    probe.merge_from_dict(USER_OPTS)
    old = _old_path(DISTILL_CFG, cf.distill_overrides(str(soft), probe), work, USER_OPTS,
                    TRAIN_ARGS)
    options = train_options(DISTILL_CFG, work, USER_OPTS, TRAIN_ARGS)
    new = cf.prepare_config(DISTILL_CFG, cf.distill_overrides(str(soft), probe), options)
    _same(old, new)
    assert new.model.head.loss.temperature == 2.0 and new.model.head.num_classes == 3


def test_train_flags_reach_the_config(tmp_path):
    with pytest.raises(SystemExit):  # tools/train.py's parser refuses what it does not know
        train_options(FIT_CFG, None, None, ['--no-such-flag'])
    opts = train_options(FIT_CFG, None, None, ['--resume', 'x.pth', '--no-validate',
                                               '--no-persistent-workers'])
    assert (opts.resume, opts.no_validate, opts.no_persistent_workers) == ('x.pth', True, True)
    cfg = cf.prepare_config(FIT_CFG, {}, opts)
    assert cfg.load_from == 'x.pth' and cfg.val_dataloader is None
    assert cfg.work_dir == './work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist'
