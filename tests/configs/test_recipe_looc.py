"""LooC's ImageNet config pinned to the paper.

Reference: Xiao, Wang, Efros & Darrell, "What Should Not Be Contrastive in Contrastive Learning",
ICLR 2021 (arXiv 2008.05659): section 3 (the leave-one-out views, one all-invariant space and
one space per augmentation, the shared backbone), section 4 (MoCo v2 as the base: its ResNet-50,
2-layer MLP heads, queue, key-encoder momentum and temperature; augmentations colour and
rotation by multiples of 90 degrees).  The paper publishes no code.
"""
from tests.configs import recipe

PATH = 'looc/looc_r50_8xb32-500e_in1k.py'


def test_model():
    model = recipe.load(PATH).model
    assert model.type == 'LooC'
    recipe.assert_values(model.backbone, dict(type='ResNet', depth=50))
    # one MoCo v2 head per space: 2048 -> 2048 -> 128
    recipe.assert_values(model.neck, dict(type='MoCoV2Neck', in_channels=2048,
                                          hid_channels=2048, out_channels=128))
    # two left-out augmentations (colour, rotation): 3 embedding spaces
    assert model.num_augmentations == 2
    recipe.assert_values(model, dict(queue_len=16384, feat_dim=128, momentum=0.001))
    recipe.assert_values(model.loss, dict(type='LooCLoss', temperature=0.2))
    # the representation every tool evaluates by default is the backbone's V
    assert model.representation == 'backbone'


def test_optimizer_and_schedule():
    cfg = recipe.load(PATH)
    assert recipe.name_gpus_batch(PATH) == (8, 32)
    assert recipe.total_batch(cfg, 8) == 256
    recipe.assert_values(recipe.optimizer(cfg), dict(type='SGD', lr=0.03, momentum=0.9,
                                                     weight_decay=1e-4))
    assert recipe.schedulers(cfg) == [dict(type='CosineAnnealingLR', T_max=500, by_epoch=True,
                                           begin=0, end=500)]
    assert cfg.train_cfg.max_epochs == 500


def test_leave_one_out_views():
    pipeline = recipe.load(PATH).train_pipeline
    assert recipe.transform_types(pipeline) == ['LoadImageFromFile', 'LooCViews', 'PackInputs']
    views = pipeline[1]
    # crop and flip drawn for every view (MoCo v2's crop 0.2-1)
    assert recipe.transform_types(views['base_pipeline']) == ['RandomResizedCrop', 'RandomFlip']
    crop = recipe.build_transform(views['base_pipeline'][0])
    assert (crop.scale, tuple(crop.crop_ratio_range)) == ((224, 224), (0.2, 1.0))
    color, rotation = views['augmentations']
    # colour: MoCo v2's jitter (0.4, 0.4, 0.4, 0.1 with p 0.8) and grayscale (p 0.2)
    jitter = recipe.find_transform(color, 'ColorJitter')
    recipe.assert_values(jitter, dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1))
    assert recipe.find_transform(color, 'RandomApply')['prob'] == 0.8
    assert recipe.find_transform(color, 'RandomGrayscale')['prob'] == 0.2
    # rotation: one of 0 / 90 / 180 / 270 degrees
    assert recipe.find_transform(rotation, 'RandomRotation90')['angles'] == [0, 90, 180, 270]
    assert recipe.build_transform(views).num_views == 4  # q, k_0, k_colour, k_rotation
