"""tools/clusterfit.py soft-targets / distill: the distillation baseline on the tiny tree."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch

from mmssl_ext import clusterfit
from mmssl_ext.cli.clusterfit import main
from tests.helpers import MOCO_FMNIST_CFG, NUM_TINY_CLASSES, REPO

FIT_CFG = osp.join(REPO, 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py')
DISTILL_CFG = osp.join(REPO, 'configs/clusterfit/clusterfit-distill_r18-w32_1xb64-3000it_fmnist.py')
N_TRAIN = 8 * NUM_TINY_CLASSES


def _data(tree):
    return ['--data-root', tree, '--ann-file', 'meta/train.txt', '--data-prefix', 'train',
            '--num-workers', '0', '--batch-size', '8']


def _meta(tree):
    with open(osp.join(tree, 'meta', 'train.txt')) as f:
        return [line.split()[0] for line in f]


@pytest.fixture(scope='module')
def tiny_classifier(tmp_path_factory):
    """A full checkpoint of the fit config's ImageClassifier with a 3-class head."""
    from mmengine.registry import DefaultScope
    from mmssl_ext.utils.config import build_model, load_config
    cfg = load_config(FIT_CFG)
    cfg.model.head.num_classes = 3
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = build_model(cfg, seed=1)
    torch.nn.init.normal_(model.head.fc.weight, std=0.5)  # make the logits differ visibly
    path = str(tmp_path_factory.mktemp('cls') / 'cls.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path, model.eval()


def _soft_logits(tree, ckpt, out, *extra):
    return main(['soft-targets', '--config', FIT_CFG, '--checkpoint', ckpt,
                 '--temperature', '2', *_data(tree), '--out-dir', out,
                 '--cfg-options', 'model.head.num_classes=3', *extra])


def test_logits_soft_targets_in_annotation_order(tiny_tree, tiny_classifier, tmp_path):
    from mmcv.transforms import Compose
    ckpt, model = tiny_classifier
    out = str(tmp_path / 'soft')
    s = _soft_logits(tiny_tree, ckpt, out)
    probs = np.load(osp.join(out, clusterfit.SOFT_TARGETS_FILE))
    rows = [line.split() for line in open(osp.join(out, clusterfit.SOFT_ANN_FILE))]
    summary = json.load(open(osp.join(out, clusterfit.SOFT_SUMMARY_FILE)))
    assert probs.shape == (N_TRAIN, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    assert [r[0] for r in rows] == _meta(tiny_tree)
    assert [int(r[1]) for r in rows] == probs.argmax(1).tolist()
    assert summary['mode'] == 'logits' and summary['temperature'] == 2.0 == s['temperature']
    assert summary['num_classes'] == 3 and summary['source']['checkpoint'] == ckpt
    assert 0 <= summary['argmax_vs_dataset_labels'] <= 1
    assert 0 < summary['mean_entropy_nats'] < np.log(3)
    # row i is image i: recompute a few rows image by image
    from mmssl_ext.registry import TRANSFORMS
    pipe = Compose([TRANSFORMS.build(t) for t in (
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32)),
        dict(type='PackInputs'))])
    for i in (0, 11, N_TRAIN - 1):
        data = pipe(dict(img_path=osp.join(tiny_tree, 'train', rows[i][0])))
        batch = model.data_preprocessor(dict(inputs=[data['inputs']],
                                             data_samples=[data['data_samples']]), False)
        with torch.no_grad():
            logits = model(batch['inputs'], mode='tensor')
        np.testing.assert_allclose(probs[i], torch.softmax(logits[0] / 2, 0).numpy(),
                                   rtol=1e-4, atol=1e-6)
    # float16 storage
    out16 = str(tmp_path / 'soft16')
    _soft_logits(tiny_tree, ckpt, out16, '--dtype', 'float16')
    p16 = np.load(osp.join(out16, clusterfit.SOFT_TARGETS_FILE))
    assert p16.dtype == np.float16 and np.abs(p16.astype(np.float32) - probs).max() < 2e-3


def test_centroid_soft_targets(tiny_tree, tiny_moco_ckpt, tmp_path):
    knn = ['knn_eval.train_dataloader.dataset.data_root=' + tiny_tree,
           'knn_eval.train_dataloader.num_workers=0']
    clusters = str(tmp_path / 'clusters')
    main(['cluster', '--config', MOCO_FMNIST_CFG, '--checkpoint', tiny_moco_ckpt,
          '--k', '3', '--out-dir', clusters, '--save-features', '--cfg-options', *knn])
    # from the saved features, written next to train_clusters.txt (default out dir)
    s = main(['soft-targets', '--clusters', clusters, '--temperature', '0.5'])
    assert s['mode'] == 'centroids' and s['out_dir'] == clusters and s['k'] == 3
    probs = np.load(osp.join(clusters, clusterfit.SOFT_TARGETS_FILE))
    ann = [line.split() for line in open(osp.join(clusters, clusterfit.ANN_FILE))]
    soft_ann = [line.split()[0] for line in open(osp.join(clusters, clusterfit.SOFT_ANN_FILE))]
    assert soft_ann == [r[0] for r in ann]
    # independent reference: cosine of the L2-normalised features with the centroids
    f = np.load(osp.join(clusters, 'features.npy')).astype(np.float64)
    c = np.load(osp.join(clusters, clusterfit.CENTROIDS_FILE)).astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    z = f @ c.T / 0.5
    ref = np.exp(z - z.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, ref, rtol=1e-4, atol=1e-6)
    assert s['argmax_vs_clusters'] == pytest.approx(
        float((ref.argmax(1) == np.array([int(r[1]) for r in ann])).mean()), abs=1e-4)
    # re-extracting with the same N_pre and images gives the same targets
    again = str(tmp_path / 'again')
    main(['soft-targets', '--clusters', clusters, '--temperature', '0.5',
          '--config', MOCO_FMNIST_CFG, '--checkpoint', tiny_moco_ckpt,
          '--out-dir', again, '--cfg-options', *knn])
    np.testing.assert_allclose(np.load(osp.join(again, clusterfit.SOFT_TARGETS_FILE)), probs,
                               rtol=1e-4, atol=1e-6)
    # other images than the cluster step's are refused
    with pytest.raises(ValueError, match=r'not those of .*train_clusters.txt: 10 vs 24 images'):
        main(['soft-targets', '--clusters', clusters, '--config', MOCO_FMNIST_CFG,
              '--checkpoint', tiny_moco_ckpt, '--num-samples', '10',
              '--out-dir', str(tmp_path / 'x'), '--cfg-options', *knn])


def test_soft_target_errors(tiny_tree, tiny_moco_ckpt, tmp_path):
    with pytest.raises(ValueError, match='has no classification head.*--clusters DIR'):
        main(['soft-targets', '--config', MOCO_FMNIST_CFG, '--checkpoint',
              tiny_moco_ckpt, *_data(tiny_tree), '--out-dir', str(tmp_path / 'o')])
    with pytest.raises(ValueError, match='needs --out-dir'):
        main(['soft-targets', '--config', FIT_CFG, '--checkpoint', tiny_moco_ckpt])
    with pytest.raises(ValueError, match='no head weights'):
        # the classifier config with a MoCo checkpoint: its backbone fits, but no head
        main(['soft-targets', '--config', FIT_CFG, '--checkpoint', tiny_moco_ckpt,
              *_data(tiny_tree), '--out-dir', str(tmp_path / 'o')])
    assert not (tmp_path / 'o').exists()


def test_distill_trains_on_soft_targets(tiny_tree, tiny_classifier, tmp_path):
    ckpt, _ = tiny_classifier
    soft = str(tmp_path / 'soft')
    _soft_logits(tiny_tree, ckpt, soft)
    work = str(tmp_path / 'distill')
    out = main(['distill', DISTILL_CFG, '--soft-targets', soft, '--work-dir', work,
                '--cfg-options', 'train_dataloader.batch_size=4',
                'train_dataloader.num_workers=0', 'train_cfg.max_iters=3',
                'default_hooks.checkpoint.interval=3',
                'default_hooks.logger.interval=1'])
    assert out['num_classes'] == 3 and out['temperature'] == 2.0
    assert osp.isfile(out['checkpoint']) and out['checkpoint'].endswith('iter_3.pth')
    state = torch.load(out['checkpoint'], map_location='cpu', weights_only=True)['state_dict']
    assert state['head.fc.weight'].shape == (3, 256)  # half-width ResNet-18
    dumped = open(osp.join(work, osp.basename(DISTILL_CFG))).read()
    assert 'SoftLabelDataset' in dumped and 'DistillationKLLoss' in dumped
    assert osp.join(soft, clusterfit.SOFT_TARGETS_FILE) in dumped
    # the logged training loss is the KD loss, finite
    scalars, = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    logs = [json.loads(line) for line in open(scalars)]
    losses = [x['loss'] for x in logs if 'loss' in x]
    assert len(losses) == 3 and all(np.isfinite(losses)) and min(losses) >= 0
    # a config without SoftLabelDataset is refused, naming the fix
    with pytest.raises(ValueError, match=r"trains on CustomDataset; it needs .*SoftLabelDataset"):
        main(['distill', FIT_CFG, '--soft-targets', soft, '--work-dir',
              str(tmp_path / 'w')])
