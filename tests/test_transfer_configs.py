"""Every transfer benchmark config runs a couple of iterations from a checkpoint of ours.

Classification (linear probe, fine-tune with a linear or an MLP head, semi-supervised 1 % / 10 %):
the Fashion-MNIST configs with the tiny PIRL ResNet-18 checkpoint, the ImageNet ones with a PIRL
R50 checkpoint, on the tiny tree.  Detection: the COCO / VOC mmdet configs with the R50 checkpoint
on a tiny COCO-format set (their model parts untouched), and the Fashion-MNIST detection config
through tools/detection_transfer.py, which also evaluates bbox mAP.  A checkpoint that does not
fit the backbone is an error.
"""
import glob
import json
import os.path as osp
import shutil

import pytest
import torch

from mmssl_ext.cli import detection_transfer, train as train_api
from mmssl_ext.datasets.subset import write_subsets
from mmssl_ext.engine.hooks.pretrained_check import PretrainedKeysError
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

BENCH = osp.join(REPO, 'configs', 'transfer')
CLS_CONFIGS = sorted(glob.glob(osp.join(BENCH, '*.py')))
DET_CONFIGS = sorted(glob.glob(osp.join(BENCH, 'mmdet', '*.py')))
FMNIST_DET = osp.join(BENCH, 'mmdet', 'faster-rcnn_r18-w32_fpn_1xb8-1000it_fmnist-det.py')


def test_the_benchmark_set_is_complete():
    names = {osp.basename(p) for p in CLS_CONFIGS + DET_CONFIGS}
    for stem in ('linear-probe_', 'finetune_', 'finetune-mlp-head_', 'semi-1pct_', 'semi-10pct_'):
        assert {n for n in names if n.startswith(stem) and n.endswith('_fmnist.py')}, stem
        assert {n for n in names if n.startswith(stem) and n.endswith('_in1k.py')}, stem
    assert {'faster-rcnn_r50-c4_ms-24k_voc0712.py', 'faster-rcnn_r50_fpn_ms-1x_coco.py',
            'mask-rcnn_r50_fpn_ms-1x_coco.py'} <= names


@pytest.fixture(scope='module')
def semi_tree(tiny_tree, tmp_path_factory):
    tree = str(tmp_path_factory.mktemp('semi') / 'tree')
    shutil.copytree(tiny_tree, tree)
    write_subsets(osp.join(tree, 'meta', 'train.txt'), (1, 10))
    return tree


def _small_images(pipeline, size=64):
    """The ImageNet pipelines at ``size`` px so an R50 step takes a second on the CPU."""
    for t in pipeline:
        if t['type'] in ('RandomResizedCrop', 'CenterCrop'):
            t['crop_size' if t['type'] == 'CenterCrop' else 'scale'] = size
        elif t['type'] == 'ResizeEdge':
            t['scale'] = size + size // 7


def _cls_cfg(path, tree, ckpt, work_dir):
    cfg = train_api.merge_args(load_config(path), train_api.parse_args([path]))
    cfg.work_dir = work_dir
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[field]
        loader.dataset.data_root = tree
        loader.batch_size = 12
        loader.num_workers = 0
        loader.persistent_workers = False
        _small_images(loader.dataset.pipeline)
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    return cfg


def _backbone_state(ckpt):
    sd = torch.load(ckpt, map_location='cpu')['state_dict']
    return {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}


@pytest.mark.parametrize('path', CLS_CONFIGS, ids=osp.basename)
def test_classification_benchmark_runs_from_our_checkpoint(path, semi_tree, tiny_pirl_ckpt,
                                                           tiny_r50_ckpt, tmp_path):
    ckpt = tiny_pirl_ckpt if '_fmnist' in path else tiny_r50_ckpt
    cfg = _cls_cfg(path, semi_tree, ckpt, str(tmp_path))
    if 'linear-probe' in path:
        # lr 30 suits a converged probe on real features; on 24 tiny images of a test network
        # the loss can explode within two steps and NaNLossCheckHook (rightly) stops the run
        cfg.optim_wrapper.optimizer.lr = 0.1
    runner = train_api.build_runner(cfg)
    runner.train()  # PretrainedCheckHook(require=True) verified the load before iteration 1
    model = runner.model
    pretrained = _backbone_state(ckpt)
    after = model.backbone.state_dict()
    params = [k for k, _ in model.backbone.named_parameters()]
    moved = [k for k in params if not torch.equal(after[k], pretrained[k])]
    if 'linear-probe' in path:
        assert moved == []  # frozen backbone, BN statistics included
        assert all(torch.equal(after[k], v) for k, v in pretrained.items())
    else:
        assert len(moved) == len(params)  # every layer fine-tunes
    if 'mlp-head' in path:
        layers = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)]
        assert len(layers) == 2 and layers[0].out_features == layers[0].in_features
        assert any(isinstance(m, torch.nn.ReLU) for m in model.head.modules())
    n_train = len(runner.train_dataloader.dataset)
    if 'semi-' in path:
        sub = cfg.train_dataloader.dataset.ann_file
        with open(osp.join(semi_tree, sub)) as f:
            assert n_train == sum(1 for _ in f) < 24
    else:
        assert n_train == 24
    assert osp.isfile(osp.join(str(tmp_path), 'epoch_1.pth'))


def test_a_checkpoint_that_does_not_fit_is_an_error(tiny_tree, tiny_moco_ckpt, tiny_r50_ckpt,
                                                    tmp_path):
    # the MoCo v2 Fashion-MNIST checkpoint is a full-width ResNet-18, the probe half width
    path = osp.join(BENCH, 'linear-probe_r18-w32_1xb256-10e_fmnist.py')
    cfg = _cls_cfg(path, tiny_tree, tiny_moco_ckpt, str(tmp_path))
    with pytest.raises(PretrainedKeysError, match=r'another shape'):
        train_api.build_runner(cfg).train()
    cfg = _cls_cfg(path, tiny_tree, tiny_r50_ckpt, str(tmp_path))  # R50 into ResNet-18
    with pytest.raises(PretrainedKeysError, match=r'have no place in the model.*another shape'):
        train_api.build_runner(cfg).train()
    cfg = _cls_cfg(path, tiny_tree, '', str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'model\.backbone\.init_cfg\.checkpoint=PATH'):
        train_api.build_runner(cfg).train()


def _det_data(cfg, root, masks):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=masks),
        dict(type='Resize', scale=(128, 128), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]
    from mmssl_ext.datasets.fmnist_detection import FMNIST_CLASSES
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CocoDataset', data_root=root, ann_file='annotations/train.json',
                     data_prefix=dict(img='train/'), metainfo=dict(classes=FMNIST_CLASSES),
                     pipeline=pipeline))
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg', 'test_dataloader',
                'test_evaluator', 'test_cfg'):
        cfg[key] = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)


@pytest.mark.parametrize('path', [p for p in DET_CONFIGS if 'fmnist' not in p], ids=osp.basename)
def test_mmdet_benchmark_trains_from_our_r50(path, tiny_det_root, tiny_r50_ckpt, tmp_path):
    cfg = train_api.merge_args(load_config(path), train_api.parse_args([path]))
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.norm_eval is False and cfg.model.backbone.frozen_stages == -1
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
    cfg.work_dir = str(tmp_path)
    cfg.model.backbone.init_cfg.checkpoint = tiny_r50_ckpt
    c4 = 'shared_head' in cfg.model.roi_head
    if c4:
        cfg.model.roi_head.shared_head.init_cfg.checkpoint = tiny_r50_ckpt
        cfg.model.roi_head.bbox_head.num_classes = 10
    else:
        cfg.model.roi_head.bbox_head.num_classes = 10
        if 'mask_head' in cfg.model.roi_head:
            cfg.model.roi_head.mask_head.num_classes = 10
    # fewer proposals / sampled RoIs than the real schedules (same model): seconds, not minutes
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=32)
    cfg.model.train_cfg.rcnn.sampler.num = 16
    _det_data(cfg, tiny_det_root, masks='mask_head' in cfg.model.roi_head)
    runner = train_api.build_runner(cfg)
    runner.train()
    pretrained = _backbone_state(tiny_r50_ckpt)
    model = runner.model
    bb_keys = set(model.backbone.state_dict())
    if c4:  # res1-4 in the backbone, res5 + an extra norm in the RoI head
        head = model.roi_head.shared_head
        assert type(head).__name__ == 'ResLayerExtraNorm'
        assert bb_keys == {k for k in pretrained if not k.startswith('layer4.')}
        assert {k for k in head.state_dict() if not k.startswith('norm.')} == \
            {k for k in pretrained if k.startswith('layer4.')}
    else:
        assert bb_keys == set(pretrained)
    # SyncBN runs as BN in one process and trains: the statistics moved away from the file's
    bn = [k for k in bb_keys if k.endswith('running_mean')]
    assert bn and all(not torch.equal(model.backbone.state_dict()[k], pretrained[k]) for k in bn)
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))


def test_fmnist_detection_transfer_tool(tiny_det_root, tiny_pirl_ckpt, tmp_path, capsys):
    opts = {
        'train_dataloader.dataset.data_root': tiny_det_root,
        'val_dataloader.dataset.data_root': tiny_det_root,
        'val_evaluator.ann_file': osp.join(tiny_det_root, 'annotations', 'val.json'),
        'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
        'val_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False, 'val_dataloader.persistent_workers': False,
    }
    argv = ['--config', FMNIST_DET, '--backbone', 'random',
            '--backbone', f'pirl={tiny_pirl_ckpt}', '--iters', '3',
            '--work-dir', str(tmp_path), '--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]
    res = detection_transfer.main(argv)
    assert list(res) == ['random', 'pirl']
    for r in res.values():
        assert 0.0 <= r['bbox_mAP'] <= 1.0 and 0.0 <= r['bbox_mAP_50'] <= 1.0
    saved = json.load(open(tmp_path / 'detection_transfer.json'))
    assert saved['results'] == res and saved['iters'] == 3
    out = capsys.readouterr().out
    assert '| random |' in out and '| pirl |' in out
    # the PIRL run started from the checkpoint (3 iterations, lr warm-up: still close to it),
    # the random one did not
    pirl = torch.load(tmp_path / 'pirl' / 'iter_3.pth', map_location='cpu')['state_dict']
    rand = torch.load(tmp_path / 'random' / 'iter_3.pth', map_location='cpu')['state_dict']
    ref = _backbone_state(tiny_pirl_ckpt)['layer3.0.conv1.weight']
    assert (pirl['backbone.layer3.0.conv1.weight'] - ref).abs().max() < \
        (rand['backbone.layer3.0.conv1.weight'] - ref).abs().max() / 10


def test_detection_transfer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        detection_transfer.run(['pirl=nope.pth'], work_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"two checkpoints are named \['random'\]"):
        detection_transfer.run(['random', 'random'], work_dir=str(tmp_path))
