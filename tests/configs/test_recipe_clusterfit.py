"""ClusterFit's ImageNet fit step pinned to VISSL's recipe.

Reference: facebookresearch/vissl, configs/config/pretrain/clusterfit/
clusterfit_resnet_8gpu_imagenet.yaml (below "VISSL yaml") and vissl/utils/hydra_config.py
(lr scaling, warm-up resolution).
"""
import numpy as np

from tests.configs import recipe

PATH = 'clusterfit/clusterfit-fit_r50_8xb32-105e_in1k.py'


def test_optimizer_and_schedule():
    cfg = recipe.load(PATH)
    # VISSL yaml BATCHSIZE_PER_REPLICA 32, NUM_NODES 1, NUM_PROC_PER_NODE 8
    assert recipe.name_gpus_batch(PATH) == (8, 32)
    assert recipe.total_batch(cfg, 8) == 256
    # VISSL yaml OPTIMIZER: sgd, weight_decay 0.0001, momentum 0.9, nesterov False,
    # auto_lr_scaling base_value 0.1 per base_lr_batch_size 256
    recipe.assert_values(recipe.optimizer(cfg), dict(type='SGD', lr=0.1, momentum=0.9,
                                                     weight_decay=1e-4, nesterov=False))
    # VISSL yaml regularize_bn: False, regularize_bias: True
    assert recipe.effective_weight_decay(cfg) == dict(
        conv_weight=1e-4, linear_weight=1e-4, norm_weight=0., norm_bias=0., linear_bias=1e-4)
    # VISSL yaml num_epochs 105, multistep values [0.1, 0.01, ...] at [30, 60, 90, 100]; its
    # linear warm-up is dropped on one node (resolve_linear_schedule: start 0.1 <= end 0.1)
    assert [s['type'] for s in recipe.schedulers(cfg)] == ['MultiStepLR']
    recipe.assert_values(recipe.schedulers(cfg)[0], dict(by_epoch=True, gamma=0.1,
                                                         milestones=[30, 60, 90, 100]))
    assert cfg.train_cfg.max_epochs == 105 and cfg.train_cfg.type == 'EpochBasedTrainLoop'


def test_model():
    model = recipe.load(PATH).model
    # VISSL yaml TRUNK resnet DEPTH 50; HEAD ["mlp", {"dims": [2048, 16000]}];
    # LOSS cross_entropy_multiple_output_single_target
    recipe.assert_values(model.backbone, dict(type='ResNet', depth=50))
    recipe.assert_values(model.head, dict(type='LinearClsHead', in_channels=2048,
                                          num_classes=16000))
    recipe.assert_values(model.head.loss, dict(type='CrossEntropyLoss', loss_weight=1.0))
    assert 'label_smooth_val' not in model.head.loss


def test_augmentation():
    cfg = recipe.load(PATH)
    pipeline = cfg.train_pipeline
    # VISSL yaml TRANSFORMS: RandomResizedCrop 224 (torchvision's scale 0.08-1), ColorJitter
    # brightness / contrast / saturation [0.6, 1.4] (= 0.4), hue [-0.2, 0.2] (= 0.2), always
    # applied, RandomHorizontalFlip (p 0.5), in that order
    assert recipe.transform_types(pipeline) == [
        'LoadImageFromFile', 'RandomResizedCrop', 'ColorJitter', 'RandomFlip', 'PackInputs']
    crop = recipe.build_transform(pipeline[1])
    assert (crop.scale, tuple(crop.crop_ratio_range)) == ((224, 224), (0.08, 1.0))
    recipe.assert_values(pipeline[2], dict(brightness=0.4, contrast=0.4, saturation=0.4,
                                           hue=0.2))
    flip = recipe.build_transform(pipeline[3])
    assert (flip.prob, flip.direction) == (0.5, 'horizontal')
    # VISSL yaml Normalize mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225] (x 255)
    pre = cfg.data_preprocessor
    np.testing.assert_allclose(pre.mean, np.array([0.485, 0.456, 0.406]) * 255, rtol=1e-3)
    np.testing.assert_allclose(pre.std, np.array([0.229, 0.224, 0.225]) * 255, rtol=1e-3)
    assert pre.to_rgb is True
