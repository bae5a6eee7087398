"""Jigsaw's ImageNet configs pinned to VISSL's recipe, and to Noroozi & Favaro where VISSL's
recipe is not followed by design (configs/jigsaw/README.md, "The ImageNet recipe and VISSL's").

Reference: facebookresearch/vissl, configs/config/pretrain/jigsaw/jigsaw_8gpu_resnet.yaml
(below "VISSL yaml"), vissl/utils/hydra_config.py (lr scaling, warm-up resolution),
vissl/data/ssl_transforms/img_patches_tensor.py, extra_scripts/generate_jigsaw_permutations.py.
"""
import numpy as np
import pytest

from mmssl_ext.datasets.transforms import generate_permutation_set
from tests.configs import recipe

VISSL = 'jigsaw/jigsaw_r50_8xb32-105e_in1k.py'
OURS = 'jigsaw/jigsaw_r50_8xb32-90e_in1k.py'


@pytest.mark.parametrize('path', [VISSL, OURS])
def test_optimizer_batch_and_tiles(path):
    cfg = recipe.load(path)
    # VISSL yaml BATCHSIZE_PER_REPLICA 32, NUM_NODES 1, NUM_PROC_PER_NODE 8
    assert recipe.name_gpus_batch(path) == (8, 32)
    assert recipe.total_batch(cfg, 8) == 256
    # VISSL yaml OPTIMIZER: sgd, weight_decay 0.0001, momentum 0.9, nesterov False,
    # auto_lr_scaling base_value 0.1 per base_lr_batch_size 256
    recipe.assert_values(recipe.optimizer(cfg), dict(type='SGD', lr=0.1, momentum=0.9,
                                                     weight_decay=1e-4, nesterov=False))
    # VISSL yaml regularize_bn: False, regularize_bias: True
    assert recipe.effective_weight_decay(cfg) == dict(
        conv_weight=1e-4, linear_weight=1e-4, norm_weight=0., norm_bias=0., linear_bias=1e-4)
    # VISSL yaml TRUNK resnet DEPTH 50
    recipe.assert_values(cfg.model.backbone, dict(type='ResNet', depth=50))
    # VISSL yaml RandomCrop 255, ImgPatchesFromTensor num_patches 9, patch_jitter 21: cells of
    # 255 // 3 = 85 px, 85 - 21 = 64 px tiles; the crop itself is PIRL's (README)
    jig = recipe.find_transform(cfg.train_pipeline, 'JigsawPatches')
    recipe.assert_values(jig, dict(grid=3, crop_size=255, patch_size=64))
    # the permutation set: extra_scripts/generate_jigsaw_permutations.py --method max_avg
    # (the perm_file hamming_perms_2000_patches_9_max_avg.npy), Noroozi & Favaro's Algorithm 1
    assert jig['permutation_method'] == 'max_avg_hamming'
    assert cfg.model.head.num_classes == jig['num_permutations']
    assert cfg.randomness.diff_rank_seed is True  # vissl/utils/misc.py set_seeds: per rank


def test_vissl_schedule_and_set_size():
    cfg = recipe.load(VISSL)
    # VISSL yaml num_epochs 105; multistep values [0.1, 0.01, 0.001, 0.0001, 0.00001] at
    # milestones [30, 60, 90, 100]; the linear warm-up is dropped on one node
    # (hydra_config.resolve_linear_schedule: start_value 0.1 * 256 / 256 <= end_value 0.1)
    assert recipe.schedulers(cfg) == [dict(type='MultiStepLR', by_epoch=True,
                                           milestones=[30, 60, 90, 100], gamma=0.1)]
    assert cfg.train_cfg.max_epochs == 105
    # VISSL yaml perm_file ..._2000_...; HEAD mlp [9000, 2000]
    assert recipe.find_transform(cfg.train_pipeline, 'JigsawPatches')['num_permutations'] == 2000


def test_noroozi_set_size_and_our_schedule():
    cfg = recipe.load(OURS)
    # Noroozi & Favaro 2016: a set of 1000 permutations of maximal average Hamming distance
    assert recipe.find_transform(cfg.train_pipeline, 'JigsawPatches')['num_permutations'] == 1000
    # our schedule, a documented choice (README): 90 epochs, /10 at 30, 60, 80
    assert recipe.schedulers(cfg) == [dict(type='MultiStepLR', by_epoch=True,
                                           milestones=[30, 60, 80], gamma=0.1)]
    assert cfg.train_cfg.max_epochs == 90


def test_built_set_is_the_max_avg_set():
    jig = recipe.build_transform(
        recipe.find_transform(recipe.load(OURS).train_pipeline, 'JigsawPatches'))
    np.testing.assert_array_equal(
        jig.permutations, generate_permutation_set(1000, seed=0, method='max_avg_hamming'))
