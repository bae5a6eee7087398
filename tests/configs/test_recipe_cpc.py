"""CPC v2's ImageNet config pinned to its reference.

CPC v2 has no official code release.  References: Henaff et al., "Data-Efficient Image
Recognition with Contrastive Predictive Coding" (ICML 2020), appendix A.2 pseudo-code
(``pixelCNN(latents)`` and ``CPC(latents, target_dim=64, emb_scale=0.1, steps_to_ignore=2,
steps_to_predict=3)``) and the grid of van den Oord et al., "Representation Learning with
Contrastive Predictive Coding" (2018), section 3.2.  Values that are our documented choices
(configs/cpc/README.md, "Defaults and choices" / "Known differences") are pinned as such, so
that a change of them is a deliberate one.
"""
import torch

from tests.configs import recipe

PATH = 'cpc/cpcv2_r50_8xb32-200e_in1k.py'


def _model(cfg):
    """The config's model with a ResNet-18 encoder (the geometry, not the weights, is tested)."""
    from mmengine.registry import DefaultScope

    from mmssl_ext.registry import MODELS
    model_cfg = recipe.plain(cfg.model)
    model_cfg['backbone']['depth'] = 18
    model_cfg['neck']['in_channels'] = 512
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(model_cfg)


def test_prediction_offsets_and_context_network():
    cfg = recipe.load(PATH)
    model = _model(cfg)
    # A.2 pseudo-code: for i in range(steps_to_ignore=2, steps_to_predict=3), targets (i + 1)
    # rows below: only the row 3 below; one linear predictor (a 1x1 Conv2D) per offset
    assert model.pred_offsets == (3, )
    assert len(model.predictors) == 1
    # A.2 pixelCNN: 5 residual blocks, each 1x1 -> ReLU -> (1, 3) conv, 1 row padded on top,
    # (2, 1) VALID conv (the row and the one above, 3 columns) -> ReLU -> 1x1, bottleneck 256
    recipe.assert_values(cfg.model.neck, dict(type='CPCContextNetwork', num_blocks=5,
                                              kernel_size=[2, 3]))
    assert model.neck.blocks[0].reduce.out_channels == 256
    # ours: a 1x1 projection 2048 -> 512 first (README, "Known differences")
    assert cfg.model.neck.channels == 512


def test_grid_and_encoder():
    cfg = recipe.load(PATH)
    # van den Oord et al. 2018, 3.2: a 7 x 7 grid of 64 x 64 crops with 32 px overlap of a
    # 256 x 256 image, itself a random crop of the image resized to 300 x 300
    recipe.assert_values(cfg.model, dict(patch_size=64, patch_stride=32))
    model = _model(cfg)
    assert model.extract_patches(torch.zeros(1, 3, 256, 256)).shape == (1, 7, 7, 3, 64, 64)
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert recipe.transform_types(pipeline) == ['LoadImageFromFile', 'Resize', 'RandomCrop',
                                                'RandomFlip', 'PackInputs']
    assert recipe.plain(pipeline[1]['scale']) == [300, 300]
    assert pipeline[2]['crop_size'] == 256
    # Henaff et al. 2020: layer normalisation in the encoder (GroupNorm with one group)
    recipe.assert_values(cfg.model.backbone, dict(type='ResNet', depth=50,
                                                  norm_cfg=dict(type='GN', num_groups=1)))


def test_documented_choices():
    cfg = recipe.load(PATH)
    # README "Defaults and choices": cosine scores at T = 0.1 (the pseudo-code: raw dot product
    # of 64-d target projections, predictions scaled by emb_scale 0.1)
    recipe.assert_values(cfg.model.loss, dict(type='CPCInfoNCELoss', temperature=0.1,
                                              normalize=True))
    # per-patch flip and colour dropping, p 0.5 each (the probabilities are ours)
    recipe.assert_values(cfg.model.patch_augment, dict(flip_prob=0.5, color_drop_prob=0.5))
    # SGD lr 0.03 per 256 images, momentum 0.9, wd 1e-4 on every parameter, cosine, 200 epochs,
    # 8 GPUs x 32 images
    assert recipe.name_gpus_batch(PATH) == (8, 32) and recipe.total_batch(cfg, 8) == 256
    recipe.assert_values(recipe.optimizer(cfg), dict(type='SGD', lr=0.03, momentum=0.9,
                                                     weight_decay=1e-4))
    assert set(recipe.effective_weight_decay(cfg).values()) == {1e-4}
    assert recipe.schedulers(cfg) == [dict(type='CosineAnnealingLR', T_max=200, by_epoch=True,
                                           begin=0, end=200)]
    assert cfg.train_cfg.max_epochs == 200
