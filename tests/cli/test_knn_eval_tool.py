"""tools/knn_eval.py: trained vs random-init backbones, full and backbone-only checkpoints."""
import json

import pytest

from mmssl_ext.cli import knn_eval
from mmssl_ext.cli.extract_backbone import extract_backbone
from tests.helpers import MOCO_FMNIST_CFG, tiny_moco_options


def _opts(tree, tmp_path):
    return tiny_moco_options(tree, str(tmp_path))


def test_knn_tool_with_baseline(tiny_tree, tiny_moco_ckpt, tmp_path, capsys):
    out = tmp_path / 'knn.json'
    res = knn_eval.main([MOCO_FMNIST_CFG, tiny_moco_ckpt, '--baseline', '--ks', '3', '5',
                         '--out', str(out), '--cfg-options', *_opts(tiny_tree, tmp_path)])
    assert set(res) == {'checkpoint', 'random_init'}
    for r in res.values():
        assert set(r) == {'k3_top1', 'k3_top5', 'k5_top1', 'k5_top5'}
        assert all(0 <= v <= 100 for v in r.values())
        assert r['k3_top5'] == 100.0  # 3 classes: top-5 always contains the label
    assert json.loads(out.read_text()) == res
    printed = capsys.readouterr().out
    assert 'random_init' in printed and 'k3_top1' in printed

    # the backbone-only file gives the same numbers as the full checkpoint
    bb = str(tmp_path / 'bb.pth')
    extract_backbone(tiny_moco_ckpt, bb)
    res_bb = knn_eval.run(MOCO_FMNIST_CFG, bb, ks=(3, 5), progress=False,
                          cfg_options=_cfg_dict(tiny_tree, tmp_path))
    assert res_bb['checkpoint'] == res['checkpoint']
    # 'random' alone reproduces the seeded baseline
    res_rand = knn_eval.run(MOCO_FMNIST_CFG, 'random', ks=(3, 5), progress=False,
                            cfg_options=_cfg_dict(tiny_tree, tmp_path))
    assert res_rand == {'random_init': res['random_init']}


def _cfg_dict(tree, tmp_path):
    from mmengine.config import DictAction
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument('--o', nargs='+', action=DictAction)
    return p.parse_args(['--o', *_opts(tree, tmp_path)]).o


def test_wrong_architecture_is_named(tiny_tree, tiny_moco_ckpt, tmp_path):
    opts = _cfg_dict(tiny_tree, tmp_path)
    opts['model.backbone.depth'] = 50
    opts['model.neck.in_channels'] = 2048
    with pytest.raises(ValueError, match='iter_2.pth does not fit the ResNet backbone.*'
                       'weights missing.*another shape'):
        knn_eval.run(MOCO_FMNIST_CFG, tiny_moco_ckpt, cfg_options=opts, progress=False)


def test_config_without_knn_section_is_named(tmp_path):
    cfg = tmp_path / 'plain.py'
    cfg.write_text("_base_ = ['mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py']\n")
    with pytest.raises(KeyError, match='plain.py has no `knn_eval` section'):
        knn_eval.run(str(cfg), 'random', progress=False)


def test_top_level_data_preprocessor_is_used(tmp_path):
    """mmpretrain dataset bases put data_preprocessor at the top level; kNN must normalise too."""
    from mmengine.config import Config

    from tests.helpers import REPO
    cfg = Config.fromfile(f'{REPO}/configs/transfer/linear-probe_r18-w32_1xb256-10e_fmnist.py')
    assert 'data_preprocessor' not in cfg.model
    cfg.model.backbone.init_cfg = None  # the probe's Pretrained init needs a checkpoint path
    model = knn_eval.build_model(cfg)
    mean = model.data_preprocessor.mean.flatten().tolist()
    assert mean == pytest.approx(list(cfg.data_preprocessor.mean))
    assert mean != [0.0, 0.0, 0.0]


def test_raw_pixel_baseline(tiny_tree, tmp_path):
    """--pixels: kNN on the preprocessed input images themselves, flattened and L2-normalised."""
    import torch
    import torch.nn.functional as F

    from mmssl_ext.evaluation.features import extract_features
    from mmssl_ext.utils.config import build_dataloader, load_config
    res = knn_eval.run(MOCO_FMNIST_CFG, 'random', ks=(3, ), progress=False, pixels=True,
                       cfg_options=_cfg_dict(tiny_tree, tmp_path))
    assert set(res) == {'random_init', 'raw_pixels'}
    assert 0 <= res['raw_pixels']['k3_top1'] <= 100
    # the features are exactly the preprocessed pixels
    cfg = load_config(MOCO_FMNIST_CFG)
    cfg.merge_from_dict(_cfg_dict(tiny_tree, tmp_path))
    model = knn_eval.build_model(cfg)
    loader = build_dataloader(cfg.knn_eval.val_dataloader, seed=0)
    feats, _ = extract_features(model, loader, backbone=knn_eval.RawPixels(), progress=False)
    ref = torch.cat([F.normalize(model.data_preprocessor(b, False)['inputs'].flatten(1), dim=1)
                     for b in loader])
    assert feats.shape[1] == 3 * 32 * 32
    torch.testing.assert_close(feats, ref)


def test_holdout_queries_are_the_last_training_images(tiny_tree, tmp_path):
    """--holdout N: the last N training images are the queries and the rest the memory, the
    test split is never read (checked by a tree without one); the numbers equal an explicit
    split of the training set written out as config options."""
    import shutil
    tree = str(tmp_path / 'tree')
    shutil.copytree(tiny_tree, tree)
    shutil.rmtree(f'{tree}/val')
    (tmp_path / 'tree' / 'meta' / 'val.txt').unlink()
    opts = _cfg_dict(tree, tmp_path)
    n_train = 24  # write_tiny_imagenet_tree: 3 classes x 8, in class order
    res = knn_eval.run(MOCO_FMNIST_CFG, 'random', pixels=True, ks=(3, ), progress=False,
                       cfg_options=opts, holdout=10)

    explicit = dict(opts)
    explicit['knn_eval.train_dataloader.dataset.indices'] = list(range(n_train - 10))
    explicit['knn_eval.val_dataloader.dataset.split'] = 'train'
    explicit['knn_eval.val_dataloader.dataset.indices'] = list(range(n_train - 10, n_train))
    ref = knn_eval.run(MOCO_FMNIST_CFG, 'random', pixels=True, ks=(3, ), progress=False,
                       cfg_options=explicit)
    assert res == ref
    # 14 memory images (8 class 0, 6 class 1) against 10 queries (2 class 1, 8 class 2): class 2
    # is absent from the memory, so at most the 2 class-1 queries can be right
    assert res['raw_pixels']['k3_top1'] <= 20.0 + 1e-4

    with pytest.raises(ValueError,
                       match=r'--holdout 24: .*has 24 training images; hold out between 1 and 23'):
        knn_eval.run(MOCO_FMNIST_CFG, 'random', progress=False, cfg_options=opts, holdout=24)
