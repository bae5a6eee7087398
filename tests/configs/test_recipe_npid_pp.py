"""NPID++'s ImageNet config pinned to VISSL's recipe.

Reference: facebookresearch/vissl, configs/config/pretrain/npid/npid++_4nodes_resnet.yaml
(below "VISSL yaml"; 4 nodes x 8 GPUs x 32 images, 800 epochs) and the code it runs:
vissl/losses/nce_loss.py (NCEAverage, NCECriterion).  NPID++ is named in Misra & van der Maaten,
"Self-Supervised Learning of Pretext-Invariant Representations" (CVPR 2020), NPID with more
negatives and a longer schedule.
"""
import numpy as np

from tests.configs import recipe

PATH = 'npid/npid-pp_r50_8xb32-800e_in1k.py'


def test_optimizer_and_schedule():
    cfg = recipe.load(PATH)
    # VISSL yaml BATCHSIZE_PER_REPLICA: 32 (ours: 8 GPUs, VISSL's: 4 x 8)
    assert recipe.name_gpus_batch(PATH) == (8, 32)
    assert recipe.total_batch(cfg, 8) == 256
    # VISSL yaml OPTIMIZER: sgd, momentum 0.9, nesterov False, weight_decay 0.0001;
    # lr start_value 0.12 "for batch size 256 * 4", linearly scaled to our batch 256
    recipe.assert_values(recipe.optimizer(cfg), dict(type='SGD', lr=0.12 * 256 / 1024,
                                                     momentum=0.9, weight_decay=1e-4,
                                                     nesterov=False))
    # VISSL yaml regularize_bn: False, regularize_bias: True
    assert recipe.effective_weight_decay(cfg) == dict(
        conv_weight=1e-4, linear_weight=1e-4, norm_weight=0., norm_bias=0., linear_bias=1e-4)
    # VISSL yaml lr: cosine, start_value 0.12, end_value 0.00012, update_interval epoch;
    # num_epochs 800
    assert recipe.schedulers(cfg) == [dict(type='CosineAnnealingLR', T_max=800,
                                           eta_min_ratio=0.00012 / 0.12, by_epoch=True,
                                           begin=0, end=800)]
    assert cfg.train_cfg.max_epochs == 800 and cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.auto_scale_lr.base_batch_size == 256
    assert cfg.randomness.diff_rank_seed is True


def test_model_bank_and_loss():
    model = recipe.load(PATH).model
    assert model.type == 'NPID'
    # VISSL yaml TRUNK resnet DEPTH 50; HEAD ["mlp", {"dims": [2048, 128]}]: one linear layer
    recipe.assert_values(model.backbone, dict(type='ResNet', depth=50))
    recipe.assert_values(model.neck, dict(type='LinearNeck', in_channels=2048, out_channels=128,
                                          norm_cfg=None))
    # VISSL yaml NCE_LOSS: NUM_NEGATIVES 32000 (type random), EMBEDDING_DIM 128, MOMENTUM 0.5,
    # MEMORY_SIZE -1 (= the number of training images)
    recipe.assert_values(model.memory_bank, dict(length=1281167, feat_dim=128, momentum=0.5,
                                                 num_negatives=32000))
    # nce_loss.py NCEAverage.do_negative_sampling: (K + 1) indices drawn per sample
    assert model.memory_bank.sampling == 'per_sample'
    # VISSL yaml TEMPERATURE 0.07, NORM_CONSTANT -1 (Z estimated once), loss_type "nce"
    recipe.assert_values(model.loss, dict(type='NCELoss', temperature=0.07))
    # VISSL yaml Normalize mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225] (x 255)
    pre = model.data_preprocessor
    np.testing.assert_allclose(pre.mean, np.array([0.485, 0.456, 0.406]) * 255, rtol=1e-3)
    np.testing.assert_allclose(pre.std, np.array([0.229, 0.224, 0.225]) * 255, rtol=1e-3)


def test_augmentation():
    pipeline = recipe.load(PATH).train_pipeline
    # VISSL yaml TRANSFORMS: ColorJitter, RandomResizedCrop(224), RandomHorizontalFlip, in
    # that order (no RandomGrayscale, unlike lemniscate's NPID)
    assert recipe.transform_types(pipeline) == [
        'LoadImageFromFile', 'ColorJitter', 'RandomResizedCrop', 'RandomFlip', 'PackInputs']
    recipe.assert_values(pipeline[1], dict(brightness=0.4, contrast=0.4, saturation=0.4,
                                           hue=0.4))
    # torchvision's RandomResizedCrop default scale (0.08, 1.0)
    crop = recipe.build_transform(pipeline[2])
    assert (crop.scale, tuple(crop.crop_ratio_range)) == ((224, 224), (0.08, 1.0))
    flip = recipe.build_transform(pipeline[3])
    assert (flip.prob, flip.direction) == (0.5, 'horizontal')
