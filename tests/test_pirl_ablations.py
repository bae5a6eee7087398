"""benchmarks.pirl_ablations: every point of the sweep really trains (the setting in the config
it trained with, a checkpoint of the planned length) and is evaluated; JSON, markdown and the
three-panel plot are written, one point per setting."""
import copy
import json
import os.path as osp

import pytest
import torch

from benchmarks import pirl_ablations
from mmssl_ext.evaluation.plots import is_png
from mmssl_ext.utils.config import load_config
from tests.helpers import write_tiny_imagenet_tree

#: the quality benchmark's kNN takes k=200: 3 x 67 training images
N_TRAIN = 201


@pytest.fixture(scope='module')
def knn_tree(tmp_path_factory):
    return write_tiny_imagenet_tree(str(tmp_path_factory.mktemp('knn_tree')), n_train=67,
                                    n_val=4)


def tiny_overrides(tree):
    """The tiny tree for training and kNN, a base-width-8 ResNet-18, no collapse monitor (it
    embeds the whole tiny set before the first step)."""
    common = {'train_dataloader.dataset.data_root': tree,
              'model.backbone.stem_channels': 8, 'model.backbone.base_channels': 8,
              'ssl_runtime.hooks': [dict(type='NaNLossCheckHook'), dict(type='RNGStateHook')]}
    for split in ('train', 'val'):
        common.update({f'knn_eval.{split}_dataloader.dataset.data_root': tree,
                       f'knn_eval.{split}_dataloader.num_workers': 0,
                       f'knn_eval.{split}_dataloader.batch_size': 8})
    return {'pirl': dict(common, **{'model.memory_bank.length': N_TRAIN,
                                    'model.memory_bank.num_negatives': 16,
                                    'model.neck.in_channels': 64,
                                    'model.transform_neck.in_channels': 64}),
            'jigsaw': dict(common, **{'model.head.in_channels': 64})}


def test_sweep_on_a_tiny_budget(knn_tree, tmp_path):
    work, out = str(tmp_path / 'work'), str(tmp_path / 'results')
    report = pirl_ablations.main(
        ['--budget', '26', '--knn-train', '0', '--probe-train', '24', '--workers', '0',
         '--batch-size', '4', '--seed', '0', '--work-dir', work, '--out', out],
        base_overrides=tiny_overrides(knn_tree), lambdas=(1.0, ), negatives=(8, ),
        permutations={'jigsaw': (10, )})
    names = [p['name'] for p in report['points']]
    assert names == ['pirl-lambda1', 'pirl-negatives8', 'jigsaw-permutations10']
    base = osp.join(out, 'pirl_ablations_lambda+negatives+permutations_cpu-26-b4_seed0')
    assert report['files']['json'] == base + '.json'
    with open(base + '.json') as f:
        saved = json.load(f)
    assert [p['name'] for p in saved['points']] == names
    with open(base + '.md') as f:
        assert sum(line.startswith('| lambda |') for line in f) == 1
    assert is_png(base + '.png')
    for p in saved['points']:
        # trained: the planned iterations (26 images / (4 x images per sample)) in a checkpoint
        per_sample = 3.25 if p['method'] == 'pirl' else 2.25  # 32 px + 9 x 16 px; 9 x 16 px
        assert p['images_per_sample'] == per_sample
        assert p['iterations'] == (2 if p['method'] == 'pirl' else 3)
        ckpt = torch.load(osp.join(work, p['name'], f"iter_{p['iterations']}.pth"),
                          map_location='cpu', weights_only=False)
        assert ckpt['meta']['iter'] == p['iterations']
        for metric in ('k20_top1', 'k200_top1', 'linear_top1'):
            assert 0 <= p[metric] <= 100
        # the setting is in the config the point trained with
        cfg = load_config(osp.join(work, p['name'] + '.py'))
        if p['sweep'] == 'lambda':
            assert cfg.model.loss_lambda == p['value']
        elif p['sweep'] == 'negatives':
            assert cfg.model.memory_bank.num_negatives == p['value']
        else:
            assert cfg.model.head.num_classes == 10
            assert cfg.train_dataloader.dataset.pipeline[1].num_permutations == 10
            head = [v for k, v in ckpt['state_dict'].items() if k.startswith('head.')]
            assert head[-1].shape[0] == 10  # the classifier's bias: one per permutation


def test_default_points_cover_the_papers_settings():
    pts = pirl_ablations.points(pirl_ablations.SWEEPS)
    by_sweep = {}
    for p in pts:
        by_sweep.setdefault((p['sweep'], p['method']), []).append(p['value'])
    assert by_sweep == {('lambda', 'pirl'): [0.0, 0.25, 0.5, 0.75, 1.0],
                        ('negatives', 'pirl'): [256, 1024, 4096, 8192],
                        ('permutations', 'pirl'): [10, 100, 1000, 10000, 362880],
                        ('permutations', 'jigsaw'): [10, 100, 1000, 2000]}
    assert len({p['name'] for p in pts}) == len(pts)
    jig = [p for p in pts if p['method'] == 'jigsaw'][-1]['overrides']
    assert jig == {'train_dataloader.dataset.pipeline.1.num_permutations': 2000,
                   'model.head.num_classes': 2000}
    # PIRL's jigsaw view sits inside PIRLViews; the override reaches it in a built config
    over = [p for p in pts if p['method'] == 'pirl' and p['sweep'] == 'permutations'][0]
    cfg = copy.deepcopy(pirl_ablations.method_config('pirl'))
    cfg.merge_from_dict(over['overrides'])
    assert cfg.train_dataloader.dataset.pipeline[1].transform_pipeline[0].num_permutations == 10
    # the main-job setting, in every PIRL sweep, is trained once and reused
    assert [p['name'] for p in pts if pirl_ablations.is_default(p['method'], p['overrides'])] \
        == ['pirl-lambda0.5', 'pirl-negatives4096', 'pirl-permutations362880',
            'jigsaw-permutations1000']
    with pytest.raises(ValueError, match=r"unknown sweep\(s\) \['temperature'\]"):
        pirl_ablations.points(['temperature'])
