"""Exemplar-CNN's ImageNet config pinned to the paper.

Reference: Dosovitskiy, Fischer, Springenberg, Riedmiller & Brox, "Discriminative Unsupervised
Feature Learning with Exemplar Convolutional Neural Networks", TPAMI 38(9), 2016 (arXiv
1406.6909): section 2.1 (the elementary transformations and their ranges), section 4 / Fig. 3
(the number of surrogate classes).  The paper's own code (MATLAB / cuda-convnet, 32-96 px patches
of STL-10) has no ImageNet recipe; what the config takes from elsewhere is named in the config.
"""
import numpy as np

from tests.configs import recipe

PATH = 'exemplar_cnn/exemplar-cnn_r50_8xb32-300e_in1k.py'


def test_surrogate_classes_are_a_seed_subset_of_8000_images():
    cfg = recipe.load(PATH)
    # section 4: accuracy grows with the number of surrogate classes up to about 8000
    assert cfg.model.type == 'ExemplarCNN'
    assert cfg.model.head.num_classes == 8000
    seeds = list(cfg.train_dataloader.dataset.indices)
    assert len(seeds) == len(set(seeds)) == 8000
    # "randomly sampled from different images": distinct images spread over the whole
    # class-sorted ImageNet list (an even stride), so every class contributes seeds
    assert min(seeds) >= 0 and max(seeds) < 1281167
    gaps = np.diff(sorted(seeds))
    assert gaps.min() == gaps.max() == 1281167 // 8000
    assert any(h['type'] == 'ExemplarClassesCheckHook' for h in cfg.custom_hooks)
    # the paper's networks use dropout in the fully connected layers; SGD with momentum 0.9
    assert cfg.model.head.dropout == 0.5
    assert recipe.optimizer(cfg)['type'] == 'SGD'
    assert recipe.optimizer(cfg)['momentum'] == 0.9
    assert recipe.name_gpus_batch(PATH) == (8, 32)


def test_augmentation_ranges():
    pipeline = recipe.load(PATH).train_pipeline
    assert recipe.transform_types(pipeline) == [
        'LoadImageFromFile', 'RandomResizedCrop', 'Rotate', 'ColorJitter', 'PackInputs']
    # section 2.1 "translation ... within 0.2 of the patch size" and "scaling: multiplication of
    # the patch scale by a factor between 0.7 and 1.4", isotropic: square crops whose side is
    # 1/1.4 (area 0.51) to all of the image, at any position
    crop = recipe.build_transform(pipeline[1])
    assert crop.scale == (224, 224)
    assert tuple(crop.crop_ratio_range) == (0.5, 1.0)
    assert tuple(crop.aspect_ratio_range) == (1.0, 1.0)
    assert abs(1 / np.sqrt(crop.crop_ratio_range[0]) - 1.4) < 0.02
    # "rotation: rotation of the image by an angle up to 20 degrees", uniform in [-20, 20]
    rot = recipe.build_transform(pipeline[2])
    assert rot.prob == 1.0
    np.random.seed(0)
    angles = np.array([rot.random_negative(rot.random_magnitude()) for _ in range(4000)])
    assert angles.min() >= -20 and angles.max() <= 20
    assert angles.min() < -19 and angles.max() > 19 and abs(np.mean(angles)) < 1
    assert abs(np.mean(np.abs(angles)) - 10) < 0.5  # uniform, not concentrated at the ends
    # "color: adding a value between -0.1 and 0.1 to the hue"; "contrast 2: ... multiply
    # (saturation and value) by a factor between 0.7 and 1.4"; "contrast 1: multiply the
    # projection onto the principal components by a factor between 0.5 and 2"; ColorJitter's
    # ranges are symmetric around 1: brightness 0.6-1.4 for the value's 0.7-1.4
    recipe.assert_values(pipeline[3], dict(hue=0.1, brightness=0.4, contrast=0.5,
                                           saturation=0.5))
