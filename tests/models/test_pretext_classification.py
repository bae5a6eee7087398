"""Covariant pretext tasks that classify a transformation: the shared head (PretextClsHead) and
the RotNet, Jigsaw-puzzle and relative-location algorithms, down to their Fashion-MNIST configs
trained through tools/train.py."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.registry import MODELS
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

CONFIGS = {
    'rotation': 'configs/rotation/rotation_r18-w32_1xb64-3000it_fmnist.py',
    'jigsaw': 'configs/jigsaw/jigsaw_r18-w32_1xb64-3000it_fmnist.py',
    'relative_loc': 'configs/relative_loc/relative-loc_r18-w32_1xb64-3000it_fmnist.py',
}
TINY_BACKBONE = dict(type='ResNet', depth=18, stem_channels=8, base_channels=8,
                     norm_cfg=dict(type='BN'))
PREPROCESSOR = dict(type='PatchViewDataPreprocessor', mean=[0., 0., 0.], std=[1., 1., 1.])


def _build(cfg):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    model.init_weights()
    return model


def _reference_logits(head, feats, num_inputs):
    """The head's computation written out with its weights: pool, per-input fc + relu,
    concatenation in input order, hidden fc + relu, classifier."""
    x = feats.mean(dim=(2, 3))
    if num_inputs > 1:
        w, b = head.fc_input[0].weight, head.fc_input[0].bias
        x = torch.clamp(x @ w.t() + b, min=0)
        x = x.reshape(-1, num_inputs * w.shape[0])
    if head.fc_hidden is not None:
        w, b = head.fc_hidden[1].weight, head.fc_hidden[1].bias
        x = torch.clamp(x @ w.t() + b, min=0)
    return x @ head.fc.weight.t() + head.fc.bias


def _cross_entropy(logits, target):
    log_p = logits - logits.logsumexp(dim=1, keepdim=True)
    return -log_p[torch.arange(len(target)), target].mean()


@pytest.mark.parametrize('num_inputs,hidden', [(1, None), (1, 6), (9, 12), (2, 12)])
def test_head_loss_matches_reference(num_inputs, hidden):
    torch.manual_seed(0)
    head = _build(dict(type='PretextClsHead', in_channels=5, num_classes=7,
                       num_inputs=num_inputs, input_channels=4 if num_inputs > 1 else None,
                       hidden_channels=hidden, topk=(1, 5)))
    head.eval()  # no dropout configured anyway
    b = 6
    feats = torch.randn(b * num_inputs, 5, 3, 3)
    target = torch.randint(0, 7, (b, ))
    out = head.loss((feats, ), target)
    logits = _reference_logits(head, feats, num_inputs)
    assert torch.allclose(out['loss'], _cross_entropy(logits, target), atol=1e-6)
    top1 = (logits.argmax(1) == target).float().mean() * 100
    assert torch.allclose(out['accuracy_top-1'], top1)
    assert not out['accuracy_top-1'].requires_grad
    assert set(out) == {'loss', 'accuracy_top-1', 'accuracy_top-5'}


def test_head_order_of_inputs_matters_and_errors():
    torch.manual_seed(0)
    head = _build(dict(type='PretextClsHead', in_channels=5, num_classes=4, num_inputs=3,
                       input_channels=4, hidden_channels=8))
    feats = torch.randn(6, 5)
    swapped = feats.view(2, 3, 5)[:, [1, 0, 2]].reshape(6, 5)
    assert not torch.allclose(head(feats), head(swapped))
    with pytest.raises(ValueError, match='multiple of num_inputs=3'):
        head(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r'targets must be in \[0, 4\)'):
        head.loss(feats, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match='needs input_channels'):
        _build(dict(type='PretextClsHead', in_channels=5, num_classes=4, num_inputs=3))
    with pytest.raises(ValueError, match='num_classes must be >= 2'):
        _build(dict(type='PretextClsHead', in_channels=5, num_classes=1))


def _samples(key, labels):
    out = []
    for lab in labels:
        ds = DataSample()
        ds.set_field(lab, key)
        out.append(ds)
    return out


def _model(kind):
    if kind == 'rotation':
        return _build(dict(type='RotationPrediction', backbone=TINY_BACKBONE,
                           data_preprocessor=PREPROCESSOR,
                           head=dict(type='PretextClsHead', in_channels=64, num_classes=4)))
    if kind == 'jigsaw':
        return _build(dict(type='JigsawPuzzle', backbone=TINY_BACKBONE,
                           data_preprocessor=PREPROCESSOR,
                           head=dict(type='PretextClsHead', in_channels=64, num_classes=10,
                                     num_inputs=9, input_channels=16, hidden_channels=32)))
    return _build(dict(type='RelativeLocation', backbone=TINY_BACKBONE,
                       data_preprocessor=PREPROCESSOR,
                       head=dict(type='PretextClsHead', in_channels=64, num_classes=8,
                                 num_inputs=2, input_channels=16, hidden_channels=32)))


@pytest.mark.parametrize('kind,views,key,labels', [
    ('rotation', 4, 'rot_label', [np.arange(4), np.arange(4), np.arange(4)]),
    ('jigsaw', 9, 'jigsaw_label', [3, 7, 0]),
    ('relative_loc', 2, 'rel_loc_label', [0, 5, 7]),
])
def test_forward_backward_reaches_backbone(kind, views, key, labels):
    torch.manual_seed(0)
    model = _model(kind)
    model.train()
    inputs = torch.randn(3, views, 3, 16, 16)
    losses = model.loss(inputs, _samples(key, labels))
    assert torch.isfinite(losses['loss'])
    assert 0 <= float(losses['accuracy_top-1']) <= 100
    losses['loss'].backward()
    grad = model.backbone.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # the loss is the head's loss on the backbone features of all B*N views at once
    model.eval()
    with torch.no_grad():
        flat = model.prepare_views(inputs.flatten(0, 1))
        logits = model.head(model.backbone(flat))
        target = torch.as_tensor(np.stack(labels)).reshape(-1).long()
        expect = _cross_entropy(logits, target)
        got = model.loss(inputs, _samples(key, labels))['loss']
    assert torch.allclose(got, expect, atol=1e-5)


def test_rotation_targets_follow_the_views():
    """Permuting the rotated views together with their labels leaves the loss unchanged;
    permuting the views alone changes it."""
    torch.manual_seed(0)
    model = _model('rotation').eval()
    x = torch.randn(2, 4, 3, 16, 16)
    perm = [2, 0, 3, 1]
    with torch.no_grad():
        base = model.loss(x, _samples('rot_label', [np.arange(4)] * 2))['loss']
        same = model.loss(x[:, perm], _samples('rot_label', [np.array(perm)] * 2))['loss']
        other = model.loss(x[:, perm], _samples('rot_label', [np.arange(4)] * 2))['loss']
    assert torch.allclose(base, same, atol=1e-6)
    assert not torch.allclose(base, other)


def test_jigsaw_normalises_each_tile():
    model = _model('jigsaw')
    tiles = torch.rand(18, 3, 8, 8) * 50 + torch.arange(18.).view(18, 1, 1, 1)
    out = model.prepare_views(tiles)
    assert torch.allclose(out.mean(dim=(2, 3)), torch.zeros(18, 3), atol=1e-4)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), torch.ones(18, 3), atol=1e-3)
    model.normalize_patches = False
    assert torch.equal(model.prepare_views(tiles), tiles)


def test_clear_errors_for_wrong_inputs():
    model = _model('relative_loc')
    with pytest.raises(ValueError, match='expects 2 views per sample'):
        model.loss(torch.randn(2, 3, 3, 16, 16), _samples('rel_loc_label', [0, 1]))
    with pytest.raises(ValueError, match='B x N x C x H x W'):
        model.loss(torch.randn(2, 3, 16, 16), _samples('rel_loc_label', [0, 1]))
    with pytest.raises(KeyError, match="lack 'rel_loc_label'"):
        model.loss(torch.randn(2, 2, 3, 16, 16), [DataSample(), DataSample()])


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_fmnist_config_trains_through_tools_train(name, tiny_tree, tmp_path):
    cfg_path = osp.join(REPO, CONFIGS[name])
    work = str(tmp_path / name)
    runner = train_api.main([
        cfg_path, '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=3',
        'default_hooks.logger.interval=1'])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 3 and np.isfinite(losses).all()
    ckpt = torch.load(osp.join(work, 'iter_3.pth'), map_location='cpu', weights_only=False)
    cfg = load_config(cfg_path)
    head = cfg.model.head
    assert ckpt['state_dict']['head.fc.weight'].shape[0] == head.num_classes
    # the backbone is the half-width ResNet-18 the kNN / transfer configs expect
    assert ckpt['state_dict']['backbone.layer4.1.conv2.weight'].shape[0] == 256


LINEAR_CFG = f'{REPO}/configs/transfer/linear-probe_r18-w32_1xb256-10e_fmnist.py'
ALL_PRETEXT = dict(CONFIGS,
                   inpainting='configs/inpainting/inpainting_r18-w32_1xb64-3000it_fmnist.py',
                   colorization='configs/colorization/colorization_r18-w32_1xb64-3000it_fmnist.py')


@pytest.mark.parametrize('name', sorted(ALL_PRETEXT))
def test_pretext_backbone_transfers_to_linear_probe(name, tiny_tree, tmp_path):
    """Every pretext backbone drops into the Fashion-MNIST linear-probe benchmark config like
    PIRL's (tools/extract_backbone.py; Colorization's 1-channel conv1 replicated to RGB)."""
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    from mmssl_ext.cli.extract_backbone import extract_backbone
    work = str(tmp_path / name)
    train_api.main([
        osp.join(REPO, ALL_PRETEXT[name]), '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1'])
    out = str(tmp_path / 'backbone.pth')
    extract_backbone(osp.join(work, 'iter_1.pth'), out,
                     **(dict(in_channels=3) if name == 'colorization' else {}))
    expected = torch.load(out, map_location='cpu')['state_dict']
    cfg = load_config(LINEAR_CFG)
    cfg.model.backbone.init_cfg.checkpoint = out
    cfg.model.backbone.init_cfg.prefix = None  # a backbone-only file
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PRETRAIN_MODELS.build(cfg.model)
    model.init_weights()
    state = model.backbone.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, msg=f'{name}: {key} not loaded')
    assert state['conv1.weight'].shape[1] == 3
    logits = model(torch.randn(2, 3, 32, 32), mode='tensor')
    assert torch.isfinite(logits).all()
