"""PIRL's ImageNet configs pinned to VISSL's recipe.

Reference: facebookresearch/vissl, configs/config/pretrain/pirl/pirl_jigsaw_4node_resnet50.yaml
(below "VISSL yaml"; 4 nodes x 8 GPUs x 32 images, 800 epochs) with
configs/config/pretrain/pirl/epochs/epochs_200.yaml for the 200-epoch config, and the code it
runs: vissl/losses/nce_loss.py, vissl/data/ssl_transforms/img_pil_to_patches_and_image.py,
img_patches_tensor.py, img_pil_random_photometric.py, vissl/utils/hydra_config.py (lr scaling),
vissl/utils/misc.py (seeds).
"""
import math

import numpy as np
import pytest

from tests.configs import recipe

JIGSAW = ['pirl/pirl_r50_8xb32.py', 'pirl/pirl_r50_8xb32-800e_in1k.py',
          'pirl/pirl-jigsaw-rotation_r50_8xb32_in1k.py']
ALL = JIGSAW + ['pirl/pirl-rotation_r50_8xb32_in1k.py']
EPOCHS = {'pirl/pirl_r50_8xb32-800e_in1k.py': 800}  # VISSL yaml OPTIMIZER.num_epochs: 800
# the others: 200, VISSL's epochs/epochs_200.yaml


@pytest.mark.parametrize('path', ALL)
def test_optimizer_and_schedule(path):
    cfg = recipe.load(path)
    # VISSL yaml BATCHSIZE_PER_REPLICA: 32 (our configs: 8 GPUs, VISSL's: 4 x 8)
    assert recipe.name_gpus_batch(path) == (8, 32)
    assert recipe.total_batch(cfg, 8) == 256
    # VISSL yaml OPTIMIZER: sgd, momentum 0.9, nesterov False, weight_decay 0.0001;
    # lr auto_lr_scaling base_value 0.03 per base_lr_batch_size 256 (start_value 0.12 at 1024)
    recipe.assert_values(recipe.optimizer(cfg), dict(type='SGD', lr=0.03, momentum=0.9,
                                                     weight_decay=1e-4, nesterov=False))
    # VISSL yaml regularize_bn: False, regularize_bias: False
    assert recipe.effective_weight_decay(cfg) == dict(
        conv_weight=1e-4, linear_weight=1e-4, norm_weight=0., norm_bias=0., linear_bias=0.)
    # VISSL yaml param_schedulers.lr: cosine, update_interval epoch, end_value 0.00012 for
    # start_value 0.12 (hydra_config.get_scaled_lr_scheduler keeps the ratio), no warm-up
    epochs = EPOCHS.get(path, 200)
    assert recipe.schedulers(cfg) == [dict(type='CosineAnnealingLR', T_max=epochs,
                                           eta_min_ratio=0.00012 / 0.12, by_epoch=True,
                                           begin=0, end=epochs)]
    assert cfg.train_cfg.max_epochs == epochs and cfg.train_cfg.type == 'EpochBasedTrainLoop'
    # vissl/utils/misc.py set_seeds: seed (SEED_VALUE + dist_rank) * num_epochs, i.e. per rank
    assert cfg.randomness.diff_rank_seed is True


@pytest.mark.parametrize('path', ALL)
def test_model_bank_and_loss(path):
    model = recipe.load(path).model
    assert model.type == 'PIRL'
    # VISSL yaml TRUNK resnet, DEPTH 50
    recipe.assert_values(model.backbone, dict(type='ResNet', depth=50))
    # VISSL yaml HEAD 1 (images): ["mlp", {"dims": [2048, 128]}], a linear projection
    recipe.assert_values(model.neck, dict(type='LinearNeck', in_channels=2048, out_channels=128,
                                          norm_cfg=None))
    # VISSL yaml nce_loss_with_memory: memory_params embedding_dim 128, momentum 0.5,
    # num_train_samples 1281167, negative_sampling_params num_negatives 32000
    recipe.assert_values(model.memory_bank, dict(length=1281167, feat_dim=128, momentum=0.5,
                                                 num_negatives=32000))
    # nce_loss.py NCEAverage.do_negative_sampling: (K + 1) indices per sample ...
    assert model.memory_bank.sampling == 'per_sample'
    # ... drawn anew in each of the two NCELossWithMemory.forward terms
    assert model.shared_negatives is False
    # VISSL yaml temperature 0.07; loss_type "nce" (vissl/config/defaults.yaml)
    recipe.assert_values(model.loss, dict(type='NCELoss', temperature=0.07))
    # VISSL yaml loss_weights [0.5, 0.5]: patches => memory, images => memory
    assert model.loss_lambda == 0.5
    # VISSL runs the trunk on patches and images in train mode: BN statistics track both
    assert model.transformed_bn_stats is True
    # VISSL yaml Normalize mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225] (x 255)
    pre = model.data_preprocessor
    np.testing.assert_allclose(pre.mean, np.array([0.485, 0.456, 0.406]) * 255, rtol=1e-3)
    np.testing.assert_allclose(pre.std, np.array([0.229, 0.224, 0.225]) * 255, rtol=1e-3)
    assert pre.to_rgb is True


@pytest.mark.parametrize('path', JIGSAW)
def test_jigsaw_view(path):
    cfg = recipe.load(path)
    # VISSL yaml HEAD 0 (patches): mlp [2048, 128] (no BN / ReLU), siamese_concat_view 9,
    # mlp [1152, 128]
    recipe.assert_values(cfg.model.transform_neck, dict(
        type='JigsawProjectionNeck', in_channels=2048, num_patches=9, patch_channels=128,
        out_channels=128))
    # VISSL yaml ImgPilToPatchesAndImage: crop_scale_patches [0.6, 1.0], crop_size_patches 255,
    # num_patches 9; ImgPatchesFromTensor: cells of 255 // 3 = 85 px, patch_jitter 21, so
    # 85 - 21 = 64 px patches; np.random.permutation(9): any of the 9! orders
    jig = recipe.find_transform(cfg.train_pipeline, 'JigsawPatches')
    recipe.assert_values(jig, dict(grid=3, crop_size=255, crop_scale=[0.6, 1.0], patch_size=64,
                                   num_permutations=math.factorial(9)))
    assert recipe.build_transform(jig).permutation_method == 'random'


@pytest.mark.parametrize('path', ALL)
def test_augmentation(path):
    cfg = recipe.load(path)
    views = recipe.find_transform(cfg.train_pipeline, 'PIRLViews')
    # VISSL yaml ImgPilToPatchesAndImage: crop_scale_image [0.08, 1.0], crop_size_image 224
    crop = recipe.build_transform(views['image_pipeline'][0])
    assert type(crop).__name__ == 'RandomResizedCrop'
    assert (crop.scale, tuple(crop.crop_ratio_range)) == ((224, 224), (0.08, 1.0))
    # VISSL yaml TRANSFORMS after ImgPilToPatchesAndImage, applied to the image and to each
    # patch independently (ssl_transforms_wrapper.py): ColorJitter, ImgPilRandomPhotometric,
    # RandomGrayscale, RandomHorizontalFlip, in that order
    per_view = ['ColorJitter', 'RandomApply', 'RandomGrayscale', 'RandomFlip']
    pipelines = [views['image_pipeline'][1:]]
    if path in JIGSAW:
        pipelines.append(recipe.find_transform(views, 'JigsawPatches')['patch_pipeline'])
    else:  # the rotated view: crop, rotation, then the same per-view augmentation
        assert recipe.transform_types(views['transform_pipeline'][:2]) == [
            'RandomResizedCrop', 'RandomRotation90']
        pipelines.append(views['transform_pipeline'][2:])
    for pipeline in pipelines:
        assert recipe.transform_types(pipeline) == per_view
        jitter, photometric, gray, flip = pipeline
        # ColorJitter brightness / contrast / saturation 0.4, hue 0.2, always applied
        recipe.assert_values(jitter, dict(brightness=0.4, contrast=0.4, saturation=0.4,
                                          hue=0.2))
        # img_pil_random_photometric.py: RandomApply(all four, p=0.66) (default p 0.66)
        assert photometric['prob'] == 0.66
        _check_photometric(photometric['transforms'])
        # RandomGrayscale p 0.2; RandomHorizontalFlip p 0.5 (torchvision's default)
        assert gray['prob'] == 0.2
        recipe.assert_values(flip, dict(prob=0.5))
        assert recipe.build_transform(flip).direction == 'horizontal'


def _check_photometric(transforms):
    """pil_photometric_transforms_lib.py: RandomPosterizeTransform (bits 4..8 inclusive),
    RandomSharpnessTransform (factor uniform in [0.1, 1.9]), RandomSolarizeTransform (threshold
    0..256 inclusive), AutoContrastTransform; each always applied within the RandomApply."""
    assert recipe.transform_types(transforms) == ['Posterize', 'Sharpness', 'Solarize',
                                                  'AutoContrast']
    posterize, sharpness, solarize, autocontrast = (recipe.build_transform(t) for t in transforms)
    assert all(t.prob == 1.0 for t in (posterize, sharpness, solarize, autocontrast))
    np.random.seed(0)
    bits = {math.ceil(posterize.random_magnitude()) for _ in range(500)}  # the transform ceils
    assert bits == {4, 5, 6, 7, 8}
    factors = np.array([1 + sharpness.random_negative(sharpness.random_magnitude())
                        for _ in range(2000)])
    assert 0.1 <= factors.min() < 0.15 and 1.85 < factors.max() <= 1.9
    thresholds = np.array([solarize.random_magnitude() for _ in range(2000)])
    assert 0 <= thresholds.min() < 5 and 251 < thresholds.max() <= 256
