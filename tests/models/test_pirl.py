"""PIRL: forward/backward through both branches, the patch preprocessor, a short real run."""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.registry import MODELS
from tests.helpers import REPO

PIRL_FMNIST_CFG = f'{REPO}/configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py'


def _tiny_pirl(loss_lambda=0.5, loss='NCELoss', sampling='shared'):
    cfg = Config.fromfile(PIRL_FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.memory_bank.update(length=20, num_negatives=8, sampling=sampling)
    model_cfg.loss = dict(type=loss, temperature=0.07)
    model_cfg.loss_lambda = loss_lambda
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, 3, 32, 32, generator=g)
    patches = torch.randn(b, 9, 3, 16, 16, generator=g)
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in (3, 7, 11, 19)[:b]]
    return [img, patches], samples


def _grad_norm(module):
    return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize('loss', ['NCELoss', 'InfoNCELoss'])
@pytest.mark.parametrize('sampling', ['shared', 'per_sample'])
def test_forward_backward_both_branches(loss, sampling):
    torch.manual_seed(0)
    model = _tiny_pirl(loss=loss, sampling=sampling)
    model.train()
    bank_before = model.memory_bank.feats.clone()
    inputs, samples = _batch()
    out = model.loss(inputs, samples)
    assert set(out) == {'loss', 'nce_transformed', 'nce_image'}
    assert torch.isfinite(out['loss'])
    torch.testing.assert_close(out['loss'], 0.5 * out['nce_transformed'] + 0.5 * out['nce_image'])
    out['loss'].backward()
    assert _grad_norm(model.backbone) > 0
    assert _grad_norm(model.neck) > 0 and _grad_norm(model.transform_neck) > 0
    # the bank rows of the batch moved, the others did not
    changed = (model.memory_bank.feats != bank_before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [3, 7, 11, 19]


@pytest.mark.parametrize('loss_lambda,live,dead', [(1.0, 'transform_neck', 'neck'),
                                                   (0.0, 'neck', 'transform_neck')])
def test_each_branch_alone_reaches_the_backbone(loss_lambda, live, dead):
    torch.manual_seed(0)
    model = _tiny_pirl(loss_lambda=loss_lambda)
    inputs, samples = _batch()
    model.loss(inputs, samples)['loss'].backward()
    assert _grad_norm(model.backbone) > 0, 'no gradient reached the backbone'
    assert _grad_norm(getattr(model, live)) > 0
    assert _grad_norm(getattr(model, dead)) == 0


def test_patch_preprocessor_normalises_each_patch():
    from mmssl_ext.models.data_preprocessors import PatchViewDataPreprocessor
    mean, std = [10., 20., 30.], [2., 4., 5.]
    pre = PatchViewDataPreprocessor(mean=mean, std=std, to_rgb=True)
    img = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8)
    patches = torch.randint(0, 255, (2, 9, 3, 4, 4), dtype=torch.uint8)
    out = pre(dict(inputs=[img, patches], data_samples=None))['inputs']
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(out[0], (img[:, [2, 1, 0]].float() - m) / s)
    assert out[1].shape == (2, 9, 3, 4, 4)
    for b in range(2):
        for n in range(9):
            torch.testing.assert_close(out[1][b, n], (patches[b, n, [2, 1, 0]].float() - m) / s)


def test_jigsaw_neck_depends_on_patch_order():
    from mmssl_ext.models.necks import JigsawProjectionNeck
    torch.manual_seed(0)
    neck = JigsawProjectionNeck(in_channels=16, num_patches=9, patch_channels=4, out_channels=5)
    feats = torch.randn(2 * 9, 16, 2, 2)
    out = neck((feats, ))[0]
    assert out.shape == (2, 5)
    perm = torch.randperm(9)
    shuffled = feats.view(2, 9, 16, 2, 2)[:, perm].reshape(18, 16, 2, 2)
    assert not torch.allclose(neck((shuffled, ))[0], out)  # concatenation keeps the order
    with pytest.raises(ValueError, match='multiple of num_patches=9'):
        neck((torch.randn(10, 16, 2, 2), ))


def test_short_train_run_loss_decreases(tiny_tree, tmp_path):
    """tools/train.py on the Fashion-MNIST PIRL config (shrunk to the tiny tree): loss drops."""
    work = str(tmp_path / 'pirl')
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=8',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'model.memory_bank.length=24', 'model.memory_bank.num_negatives=16',
            'train_cfg.max_iters=45', 'default_hooks.checkpoint.interval=45',
            'default_hooks.logger.interval=1', 'optim_wrapper.optimizer.lr=0.05']
    runner = train_api.main([PIRL_FMNIST_CFG, '--work-dir', work, '--cfg-options', *opts])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 45 and np.isfinite(losses).all()
    assert losses[-9:].mean() < losses[:9].mean(), losses
    ckpt = torch.load(f'{work}/iter_45.pth', map_location='cpu')
    assert ckpt['state_dict']['memory_bank.feats'].shape == (24, 128)


def test_pirl_with_mmpretrain_vit():
    """PIRL with mmpretrain's VisionTransformer: image view 32 px, 16 px patches (the position
    embedding is resized to each input size), class-token features."""
    cfg = Config.fromfile(PIRL_FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone = dict(
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=32, patch_size=8, out_type='cls_token')
    model_cfg.neck = dict(type='LinearNeck', in_channels=32, out_channels=128, gap_dim=0,
                          norm_cfg=None)
    model_cfg.transform_neck = dict(type='JigsawProjectionNeck', in_channels=32)
    model_cfg.memory_bank.update(length=20, num_negatives=8)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    inputs, samples = _batch()
    out = model.loss(inputs, samples)
    assert torch.isfinite(out['loss'])
    out['loss'].backward()
    assert _grad_norm(model.backbone) > 0
    assert _grad_norm(model.transform_neck) > 0 and _grad_norm(model.neck) > 0


def test_resume_restores_memory_bank(tiny_tree, tiny_pirl_ckpt, tmp_path):
    """--resume brings the memory bank (a buffer, so in the checkpoint) back before step 3."""
    from mmengine.hooks import Hook
    from mmssl_ext.registry import HOOKS

    seen = {}

    @HOOKS.register_module(force=True)
    class _BankProbe(Hook):
        def before_train(self, runner):
            seen['iter'] = runner.iter
            seen['bank'] = runner.model.memory_bank.feats.clone()

    work = str(tmp_path / 'resumed')
    args = train_api.parse_args([
        PIRL_FMNIST_CFG, '--work-dir', work, '--resume', tiny_pirl_ckpt, '--cfg-options',
        f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'model.memory_bank.length=24', 'model.memory_bank.num_negatives=16',
        'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=3'])
    cfg = train_api.merge_args(Config.fromfile(args.config), args)
    cfg.custom_hooks = [dict(type='_BankProbe')]
    runner = train_api.build_runner(cfg)
    runner.train()
    saved = torch.load(tiny_pirl_ckpt, map_location='cpu')['state_dict']['memory_bank.feats']
    assert seen['iter'] == 2
    torch.testing.assert_close(seen['bank'], saved)
    # and the third step changed exactly the 4 rows of its batch
    after = runner.model.memory_bank.feats
    assert int((after != saved).any(dim=1).sum()) == 4


def _bn_running_stats(model):
    bn = model.backbone.bn1
    return bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)


@pytest.mark.parametrize('track_transformed', [False, True])
def test_running_bn_stats_track_image_views_only_by_default(track_transformed):
    """Running BN statistics come from the image views unless transformed_bn_stats=True."""
    torch.manual_seed(0)
    model = _tiny_pirl()
    model.transformed_bn_stats = track_transformed
    model.train()
    inputs, samples = _batch()
    img, patches = inputs
    patches = patches * 5 + 3  # patch statistics far from the image's
    # reference: the same backbone fed only the image view
    ref = copy.deepcopy(model.backbone)
    ref(img)
    ref_mean = ref.bn1.running_mean
    out = model.loss([img, patches], samples)
    mean, var, n = _bn_running_stats(model)
    if track_transformed:
        assert n == 2  # image call + patch call
        assert not torch.allclose(mean, ref_mean)
    else:
        assert n == 1
        torch.testing.assert_close(mean, ref_mean)
        torch.testing.assert_close(var, ref.bn1.running_var)
    # either way, training still normalises patches with their own batch statistics and
    # gradients reach the backbone through the patch branch
    out['loss'].backward()
    assert _grad_norm(model.backbone) > 0
    assert all(m.track_running_stats for m in model.backbone.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
