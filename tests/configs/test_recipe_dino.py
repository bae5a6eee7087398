"""DINO's ImageNet configs pinned to the official code.

Reference: facebookresearch/dino, main_dino.py (get_args_parser defaults, DINOLoss,
DataAugmentationDINO, train_dino's schedulers), utils.py (get_params_groups, GaussianBlur,
Solarization, cosine_scheduler) and README.md: "Vanilla DINO training" (ViT-S/16, 8 GPUs, 100
epochs, default arguments), "Boosting DINO performance" (its full command; run_with_submitit.py's
default 2 nodes x 8 GPUs) and "ResNet-50 and other convnets trainings" (8 GPUs, 100 epochs).
"""
import pytest

from tests.configs import recipe

R50 = 'dino/dino_r50_8xb64-100e_in1k.py'
VIT = 'dino/dino_vit-small-p16_8xb64-100e_in1k.py'
VIT_BOOST = 'dino/dino_vit-small-p16_16xb64-300e_in1k.py'
IMAGES = 1281167  # ImageNet-1k train; the DataLoader drops the last incomplete batch


def _loss(cfg):
    # built, so that the values left to the class defaults are pinned too
    loss = recipe.build_loss(cfg.model.loss)
    return dict(student_temp=loss.student_temp, teacher_temp=loss.teacher_temp,
                warmup_teacher_temp=loss.warmup_teacher_temp, warmup_epochs=loss.warmup_epochs,
                warmup_iters=loss.warmup_iters, center_momentum=loss.center_momentum,
                out_channels=loss.out_channels, num_global_crops=loss.num_global_crops)


def _schedule(warmup, epochs):
    # utils.cosine_scheduler: linear warm-up from 0 over --warmup_epochs 10, then a cosine to
    # --min_lr 1e-6, both per iteration
    return [dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup,
                 convert_to_iter_based=True),
            dict(type='CosineAnnealingLR', T_max=epochs - warmup, eta_min=1e-6, by_epoch=True,
                 begin=warmup, end=epochs, convert_to_iter_based=True)]


def _wd_schedule(epochs):
    # wd_schedule = cosine_scheduler(--weight_decay 0.04, --weight_decay_end 0.4, epochs, ...)
    return dict(type='CosineAnnealingParamScheduler', param_name='weight_decay',
                eta_min_ratio=10.0, T_max=epochs, by_epoch=True, begin=0, end=epochs,
                convert_to_iter_based=True)


# ------------------------------------------------------------------------------ ResNet-50
def test_r50_optimizer_and_schedule():
    cfg = recipe.load(R50)
    # README ResNet-50 command: 8 GPUs, --batch_size_per_gpu 64 (default)
    assert recipe.name_gpus_batch(R50) == (8, 64) and cfg.train_dataloader.batch_size == 64
    # --optimizer sgd (momentum 0.9) --lr 0.03 x 512 / 256 --weight_decay 1e-4
    # --weight_decay_end 1e-4 (constant)
    recipe.assert_values(recipe.optimizer(cfg), dict(type='SGD', lr=0.03 * 512 / 256,
                                                     momentum=0.9, weight_decay=1e-4))
    # utils.get_params_groups: biases and 1-D parameters (norms) are not regularised
    assert recipe.effective_weight_decay(cfg) == dict(
        conv_weight=1e-4, linear_weight=1e-4, norm_weight=0.0, norm_bias=0.0, linear_bias=0.0)
    # --clip_grad 3.0 (the official clips each parameter; ours the global norm: README)
    assert recipe.plain(cfg.optim_wrapper.clip_grad) == dict(max_norm=3.0)
    # --epochs 100, --warmup_epochs 10, --min_lr 1e-6
    assert recipe.schedulers(cfg) == _schedule(10, 100)
    assert cfg.train_cfg.max_epochs == 100


def test_r50_model_and_loss():
    model = recipe.load(R50).model
    # --arch resnet50 (torchvision: no zero-init of the last BN), SyncBN (convert_sync_batchnorm)
    recipe.assert_values(model.backbone, dict(type='ResNet', depth=50,
                                              norm_cfg=dict(type='SyncBN'),
                                              zero_init_residual=False))
    # DINOHead(2048, --out_dim 65536, --use_bn_in_head False, --norm_last_layer True),
    # nlayers=3, hidden_dim=2048, bottleneck_dim=256
    recipe.assert_values(model.head, dict(in_channels=2048, out_channels=65536,
                                          hidden_channels=2048, bottleneck_channels=256,
                                          num_layers=3, use_bn=False, norm_last_layer=True))
    # DINOLoss: --warmup_teacher_temp 0.04, --teacher_temp 0.04, --warmup_teacher_temp_epochs 0,
    # student_temp 0.1, center_momentum 0.9, 2 global crops
    assert _loss(recipe.load(R50)) == dict(
        student_temp=0.1, teacher_temp=0.04, warmup_teacher_temp=0.04, warmup_epochs=0,
        warmup_iters=0, center_momentum=0.9, out_channels=65536, num_global_crops=2)
    # --momentum_teacher 0.996; --freeze_last_layer 1 epoch = 1281167 // 512 steps
    assert model.base_momentum == 0.996
    assert model.freeze_last_layer_iters == IMAGES // 512


def _check_views(pipeline, global_scale, local_scale):
    """DataAugmentationDINO: 2 global crops of 224 px and --local_crops_number 8 of 96 px."""
    multi = recipe.find_transform(pipeline, 'MultiView')
    assert multi['num_views'] == [1, 1, 8]
    g1, g2, local = multi['transforms']
    for view, size, scale in ((g1, 224, global_scale), (g2, 224, global_scale),
                              (local, 96, local_scale)):
        # RandomResizedCrop(size, scale=..., interpolation=BICUBIC)
        recipe.assert_values(view[0], dict(type='RandomResizedCrop', scale=size,
                                           crop_ratio_range=list(scale),
                                           interpolation='bicubic'))
        # flip_and_color_jitter: RandomHorizontalFlip(0.5), ColorJitter(0.4, 0.4, 0.2, 0.1)
        # with p=0.8, RandomGrayscale(p=0.2)
        assert [t['type'] for t in view[1:4]] == ['RandomFlip', 'RandomApply',
                                                  'RandomGrayscale']
        assert view[1]['prob'] == 0.5 and view[2]['prob'] == 0.8 and view[3]['prob'] == 0.2
        recipe.assert_values(view[2]['transforms'][0], dict(
            type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1))
    # utils.GaussianBlur(p, radius_min=0.1, radius_max=2.0): p 1.0, 0.1 and 0.5;
    # utils.Solarization(0.2) on the second global crop only (PIL's threshold 128)
    blur = [recipe.find_transform(v, 'GaussianBlur') for v in (g1, g2, local)]
    assert [b['prob'] for b in blur] == [1.0, 0.1, 0.5]
    assert all(b['magnitude_range'] == [0.1, 2.0] for b in blur)
    assert [len(recipe.find_transforms(v, 'Solarize')) for v in (g1, g2, local)] == [0, 1, 0]
    recipe.assert_values(recipe.find_transform(g2, 'Solarize'), dict(thr=128, prob=0.2))


def test_r50_augmentation():
    cfg = recipe.load(R50)
    # README: --global_crops_scale 0.14 1 --local_crops_scale 0.05 0.14
    _check_views(cfg.train_dataloader.dataset.pipeline, (0.14, 1.0), (0.05, 0.14))
    # normalize: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
    pre = recipe.plain(cfg.model.data_preprocessor)
    assert pre['mean'] == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255], rel=1e-3)
    assert pre['std'] == pytest.approx([0.229 * 255, 0.224 * 255, 0.225 * 255], rel=1e-3)


# ------------------------------------------------------------------------------ ViT-S/16
@pytest.mark.parametrize('path,gpus,epochs', [(VIT, 8, 100), (VIT_BOOST, 16, 300)])
def test_vit_optimizer_and_schedule(path, gpus, epochs):
    cfg = recipe.load(path)
    # --batch_size_per_gpu 64; vanilla: 8 GPUs; boosted: run_with_submitit 2 nodes x 8 GPUs
    assert recipe.name_gpus_batch(path) == (gpus, 64) and cfg.train_dataloader.batch_size == 64
    # --optimizer adamw (torch defaults), --lr 0.0005 x batch / 256, --weight_decay 0.04
    recipe.assert_values(recipe.optimizer(cfg), dict(type='AdamW', lr=5e-4 * 64 * gpus / 256,
                                                     weight_decay=0.04, betas=[0.9, 0.999]))
    assert recipe.effective_weight_decay(cfg) == dict(
        conv_weight=0.04, linear_weight=0.04, norm_weight=0.0, norm_bias=0.0, linear_bias=0.0)
    assert recipe.plain(cfg.optim_wrapper.clip_grad) == dict(max_norm=3.0)  # --clip_grad 3.0
    # --epochs (vanilla default 100, boosted 300), --warmup_epochs 10, --min_lr 1e-6,
    # --weight_decay_end 0.4
    assert recipe.schedulers(cfg) == _schedule(10, epochs) + [_wd_schedule(epochs)]
    assert cfg.train_cfg.max_epochs == epochs


@pytest.mark.parametrize('path,gpus', [(VIT, 8), (VIT_BOOST, 16)])
def test_vit_model(path, gpus):
    cfg = recipe.load(path)
    model = cfg.model
    # --arch vit_small --patch_size 16 --drop_path_rate 0.1 (student; the teacher has none)
    recipe.assert_values(model.backbone, dict(type='VisionTransformer', arch='deit-small',
                                              patch_size=16, img_size=224, drop_path_rate=0.1,
                                              out_type='cls_token'))
    assert model.neck is None
    recipe.assert_values(model.head, dict(in_channels=384, out_channels=65536,
                                          hidden_channels=2048, bottleneck_channels=256,
                                          num_layers=3, use_bn=False))
    assert model.base_momentum == 0.996
    assert model.freeze_last_layer_iters == IMAGES // (64 * gpus)  # --freeze_last_layer 1
    # DataAugmentationDINO with the default --global_crops_scale 0.4 1,
    # --local_crops_scale 0.05 0.4
    _check_views(cfg.train_dataloader.dataset.pipeline, (0.4, 1.0), (0.05, 0.4))


def test_vit_vanilla_temperature_and_last_layer():
    cfg = recipe.load(VIT)
    # main_dino.py defaults: --teacher_temp 0.04, --warmup_teacher_temp 0.04,
    # --warmup_teacher_temp_epochs 0, --norm_last_layer True
    assert _loss(cfg) == dict(
        student_temp=0.1, teacher_temp=0.04, warmup_teacher_temp=0.04, warmup_epochs=0,
        warmup_iters=0, center_momentum=0.9, out_channels=65536, num_global_crops=2)
    assert cfg.model.head.norm_last_layer is True


def test_vit_boosted_temperature_and_last_layer():
    cfg = recipe.load(VIT_BOOST)
    # README "Boosting DINO performance": --teacher_temp 0.07 --warmup_teacher_temp_epochs 30
    # (DINOLoss.teacher_temp_schedule: per epoch) --norm_last_layer false
    assert _loss(cfg) == dict(
        student_temp=0.1, teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_epochs=30,
        warmup_iters=0, center_momentum=0.9, out_channels=65536, num_global_crops=2)
    assert cfg.model.head.norm_last_layer is False
