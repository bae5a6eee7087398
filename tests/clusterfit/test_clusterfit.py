"""tools/clusterfit.py: cluster step from every kind of N_pre, annotation round trip, fit, run."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

from mmssl_ext import clusterfit
from mmssl_ext.cli.clusterfit import main
from mmssl_ext.clustering import nmi
from mmssl_ext.utils.checkpoint import extract_backbone
from tests.helpers import MOCO_FMNIST_CFG, REPO, NUM_TINY_CLASSES

FIT_CFG = osp.join(REPO, 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py')
N_TRAIN = 8 * NUM_TINY_CLASSES  # images in the tiny tree's train split


def _knn_data(tree):
    """--cfg-options pointing a config's knn_eval train split at the tiny tree."""
    return [f'knn_eval.train_dataloader.dataset.data_root={tree}',
            'knn_eval.train_dataloader.num_workers=0', 'knn_eval.train_dataloader.batch_size=8']


def _fit_opts(tree, max_iters=2):
    return _knn_data(tree) + [
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        f'train_cfg.max_iters={max_iters}', f'default_hooks.checkpoint.interval={max_iters}',
        'default_hooks.logger.interval=1']


def _read_ann(path):
    with open(path) as f:
        rows = [line.split() for line in f]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows])


def _meta_paths(tree):
    with open(osp.join(tree, 'meta', 'train.txt')) as f:
        return [line.split()[0] for line in f]


def _check_outputs(out, k, n=N_TRAIN):
    ann = osp.join(out, clusterfit.ANN_FILE)
    paths, labels = _read_ann(ann)
    summary = json.load(open(osp.join(out, clusterfit.SUMMARY_FILE)))
    centroids = np.load(osp.join(out, clusterfit.CENTROIDS_FILE))
    assert len(paths) == n and summary['num_samples'] == n and summary['k'] == k
    assert centroids.shape[0] == k
    assert sum(summary['sizes']) == n and min(summary['sizes']) >= 1
    assert np.bincount(labels, minlength=k).tolist() == summary['sizes']
    assert not [f for f in os.listdir(osp.dirname(osp.abspath(out)))
                if f.startswith('.clusterfit-')]  # no temporary folder left behind
    return paths, labels, summary


def test_annotation_round_trips_through_custom_dataset(tiny_tree, tiny_moco_ckpt, tmp_path):
    from mmpretrain.datasets import CustomDataset
    out = str(tmp_path / 'clusters')
    s = main(['cluster', '--config', MOCO_FMNIST_CFG, '--checkpoint', tiny_moco_ckpt,
              '--k', '3', '--out-dir', out, '--save-features', '--cfg-options',
              *_knn_data(tiny_tree)])
    paths, labels, summary = _check_outputs(out, 3)
    assert summary['source']['kind'] == 'config' and summary['empty_clusters_reseeded'] >= 0
    assert 0 <= s['nmi_vs_dataset_labels'] <= 1
    assert np.load(osp.join(out, 'features.npy')).shape == (N_TRAIN, 512)
    # the same images, in the order of the data set's own list
    assert paths == _meta_paths(tiny_tree)
    ds = CustomDataset(data_root=tiny_tree, data_prefix='train',
                       ann_file=osp.join(out, clusterfit.ANN_FILE), lazy_init=False)
    assert len(ds) == N_TRAIN
    for i, (p, y) in enumerate(zip(paths, labels)):
        info = ds.get_data_info(i)
        assert info['img_path'] == osp.join(tiny_tree, 'train', p)
        assert osp.isfile(info['img_path'])
        assert int(info['gt_label']) == y

    # (b) the backbone-only file of the same checkpoint gives the same clusters
    bb = str(tmp_path / 'bb.pth')
    extract_backbone(tiny_moco_ckpt, bb)
    out_b = str(tmp_path / 'clusters_bb')
    main(['cluster', '--config', MOCO_FMNIST_CFG, '--checkpoint', bb, '--k', '3',
          '--out-dir', out_b, '--cfg-options', *_knn_data(tiny_tree)])
    paths_b, labels_b, summary_b = _check_outputs(out_b, 3)
    assert paths_b == paths and labels_b.tolist() == labels.tolist()
    assert summary_b['source']['checkpoint'] == osp.abspath(bb)


def test_cluster_from_pirl_checkpoint_earlier_layer_and_pca(tiny_tree, tiny_pirl_ckpt,
                                                            tmp_path):
    cfg = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')
    out = str(tmp_path / 'c')
    main(['cluster', '--config', cfg, '--checkpoint', tiny_pirl_ckpt, '--k', '4',
          '--layer', '2', '--pca-dim', '8', '--out-dir', out, '--cfg-options',
          *_knn_data(tiny_tree)])
    _, _, summary = _check_outputs(out, 4)
    assert summary['feature_dim'] == 128  # stage 2 of the half-width ResNet-18
    assert summary['clustered_dim'] == 8 and np.load(osp.join(out, 'pca.npz'))['A'].shape == \
        (8, 128)


def test_cluster_from_torchvision_with_local_weights(tiny_tree, tmp_path):
    import torchvision
    torch.manual_seed(0)
    weights = str(tmp_path / 'r18.pth')
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    out = str(tmp_path / 'tv')
    main(['cluster', '--torchvision', 'resnet18', '--weights', weights, '--k', '3',
          '--data-root', tiny_tree, '--ann-file', 'meta/train.txt', '--data-prefix',
          'train', '--num-workers', '0', '--batch-size', '8', '--out-dir', out])
    paths, _, summary = _check_outputs(out, 3)
    assert paths == _meta_paths(tiny_tree)
    assert summary['source'] == dict(kind='torchvision', name='resnet18',
                                     weights=osp.abspath(weights), ignored_head=[
                                         'fc.bias', 'fc.weight'], layer=-1, pool='avg')
    assert summary['feature_dim'] == 512
    # an earlier stage, and a folder tree without a list file (CustomDataset scans it)
    out2 = str(tmp_path / 'tv2')
    main(['cluster', '--torchvision', 'resnet18', '--weights', weights, '--k', '2',
          '--layer', '1', '--data-root', osp.join(tiny_tree, 'train'),
          '--num-workers', '0', '--num-samples', '10', '--out-dir', out2])
    paths2, _, summary2 = _check_outputs(out2, 2, n=10)
    assert summary2['feature_dim'] == 128 and all(p.startswith('class') for p in paths2)


def test_torchvision_errors_are_named(tiny_tree, tmp_path):
    import torchvision
    base = ['cluster', '--k', '2', '--data-root', tiny_tree, '--ann-file', 'meta/train.txt',
            '--data-prefix', 'train', '--num-workers', '0', '--out-dir', str(tmp_path / 'o')]
    with pytest.raises(ValueError, match='needs --weights.*never downloads'):
        main(base + ['--torchvision', 'resnet18'])
    wrong = str(tmp_path / 'r34.pth')
    torch.save(torchvision.models.resnet34().state_dict(), wrong)
    with pytest.raises(ValueError, match=r'r34.pth does not fit torchvision resnet18: 0 weights '
                       r'missing.*unexpected.*layer1.2'):
        main(base + ['--torchvision', 'resnet18', '--weights', wrong])
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet19'"):
        main(base + ['--torchvision', 'resnet19', '--weights', 'random'])
    assert not (tmp_path / 'o').exists()


def test_k_larger_than_n_via_cli_writes_nothing(tiny_tree, tmp_path):
    out = tmp_path / 'clusters'
    with pytest.raises(ValueError, match=f'k=25 clusters from {N_TRAIN} images'):
        main(['cluster', '--torchvision', 'resnet18', '--weights', 'random',
              '--k', '25', '--data-root', tiny_tree, '--ann-file', 'meta/train.txt',
              '--data-prefix', 'train', '--num-workers', '0', '--out-dir', str(out)])
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_fit_trains_on_the_pseudo_labels(tiny_tree, tmp_path):
    clusters = str(tmp_path / 'clusters')
    main(['cluster', '--torchvision', 'resnet18', '--weights', 'random', '--k', '5',
          '--data-root', tiny_tree, '--ann-file', 'meta/train.txt', '--data-prefix',
          'train', '--num-workers', '0', '--out-dir', clusters])
    work = str(tmp_path / 'fit')
    out = main(['fit', FIT_CFG, '--clusters', clusters, '--work-dir', work,
                '--cfg-options', *_fit_opts(tiny_tree)])
    assert out['num_classes'] == 5 and osp.isfile(out['checkpoint'])
    state = torch.load(out['checkpoint'], map_location='cpu', weights_only=False)['state_dict']
    assert state['head.fc.weight'].shape == (5, 256)  # half-width ResNet-18
    dumped = open(osp.join(work, osp.basename(FIT_CFG))).read()
    assert osp.join(clusters, clusterfit.ANN_FILE) in dumped


def test_fit_refuses_images_that_are_not_there(tiny_tree, tmp_path):
    clusters = tmp_path / 'c'
    clusters.mkdir()
    (clusters / clusterfit.ANN_FILE).write_text('class0/00000.png 0\nnope/x.png 1\n')
    with pytest.raises(FileNotFoundError, match=r'1 of 2 images are not under .*train '
                       r'\(first: nope/x.png\)'):
        main(['fit', FIT_CFG, '--clusters', str(clusters), '--work-dir',
              str(tmp_path / 'w'), '--cfg-options',
              f'train_dataloader.dataset.data_root={tiny_tree}'])


def test_run_chains_cluster_fit_extract(tiny_tree, tiny_moco_ckpt, tmp_path, capsys):
    from mmssl_ext.utils.checkpoint import load_backbone_weights
    from mmssl_ext.utils.config import build_model, load_config
    work = str(tmp_path / 'run')
    out = main(['run', FIT_CFG, '--pretrained-config', MOCO_FMNIST_CFG,
                '--checkpoint', tiny_moco_ckpt, '--k', '3', '--num-samples', '18',
                '--work-dir', work, '--cfg-options', *_fit_opts(tiny_tree)])
    _check_outputs(work, 3, n=18)
    printed = capsys.readouterr().out
    for key in ('ann_file', 'checkpoint', 'backbone'):
        assert out[key] in printed and osp.isfile(out[key])
    cfg = load_config(FIT_CFG)
    cfg.model.head.num_classes = 3
    model = build_model(cfg)
    load_backbone_weights(model, out['backbone'])
    saved = torch.load(out['backbone'], map_location='cpu', weights_only=True)['state_dict']
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, saved[k])


def test_nmi():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(a, (a + 1) % 3) == pytest.approx(1.0)  # relabelling
    assert nmi(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    # by hand: b determines a, so I = H(a) = log 2; H(b) = 1.5 log 2; I / mean(H) = 0.8
    assert nmi(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2])) == \
        pytest.approx(0.8)
    sklearn_metrics = pytest.importorskip('sklearn.metrics')
    rng = np.random.RandomState(0)
    x, y = rng.randint(0, 5, 200), rng.randint(0, 7, 200)
    assert nmi(x, y) == pytest.approx(
        sklearn_metrics.normalized_mutual_info_score(x, y), rel=1e-6)


@pytest.mark.parametrize('degenerate', [True, False])
def test_a_partition_dominated_by_one_cluster_is_flagged(tmp_path, degenerate, caplog):
    """Features that hardly differ (e.g. a random ResNet with zero_init_residual=True) put most
    images into one cluster: the summary and the log say so; balanced clusters say nothing."""
    import logging
    from types import SimpleNamespace

    from mmengine.logging import MMLogger
    rng = np.random.RandomState(0)
    owners = np.repeat(np.arange(4), 10)
    feats = 10 * np.eye(4, 16, dtype=np.float32)[owners] + 0.01 * rng.randn(40, 16)
    if degenerate:  # 30 of the 40 images give the same feature, the other 10 are spread out
        feats[:30] = feats[0]
        feats[30:] = 10 * rng.randn(10, 16)
    feats = feats.astype(np.float32)
    images = SimpleNamespace(rel_paths=[f'c/{i}.png' for i in range(40)], labels=owners,
                             summary=lambda: dict(img_prefix='train'))
    logger = MMLogger.get_current_instance()
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            summary = clusterfit.cluster_features(str(tmp_path / 'c'), feats, 4, images,
                                                  dict(kind='test'), progress=False)
    finally:
        logger.removeHandler(caplog.handler)
    written = json.load(open(tmp_path / 'c' / clusterfit.SUMMARY_FILE))
    if degenerate:
        assert summary['max_size'] > 20  # more than half of the 40
        assert 'largest of the 4 clusters holds' in summary['warning']
        assert 'zero_init_residual' in summary['warning']
        assert written['warning'] == summary['warning']
        assert 'holds' in caplog.text
    else:
        assert summary['max_size'] == 10
        assert 'warning' not in summary and 'warning' not in written
        assert 'holds' not in caplog.text
