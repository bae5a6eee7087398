"""NPID's ImageNet config pinned to the official code.

Reference: zhirongw/lemniscate.pytorch, main.py (arguments, the ImageNet train transform,
adjust_learning_rate, the optimizer), lib/NCEAverage.py and lib/NCECriterion.py.
"""
import numpy as np

from tests.configs import recipe

PATH = 'npid/npid_r50_8xb32-200e_in1k.py'


def test_optimizer_and_schedule():
    cfg = recipe.load(PATH)
    # main.py --batch-size 256 (one process, DataParallel); here 8 GPUs x 32
    assert recipe.name_gpus_batch(PATH) == (8, 32)
    assert recipe.total_batch(cfg, 8) == 256
    # main.py: torch.optim.SGD(model.parameters(), --lr 0.03, --momentum 0.9,
    # --weight-decay 1e-4): one parameter group, every parameter decayed
    recipe.assert_values(recipe.optimizer(cfg), dict(type='SGD', lr=0.03, momentum=0.9,
                                                     weight_decay=1e-4, nesterov=False))
    assert set(recipe.effective_weight_decay(cfg).values()) == {1e-4}
    # main.py adjust_learning_rate: lr until epoch 120, x0.1 until 160, x0.01 after; --epochs 200
    assert recipe.schedulers(cfg) == [dict(type='MultiStepLR', by_epoch=True,
                                           milestones=[120, 160], gamma=0.1)]
    assert cfg.train_cfg.max_epochs == 200
    # one process draws 256 x 4096 independent negatives; under DDP that needs a seed per rank
    assert cfg.randomness.diff_rank_seed is True


def test_model_bank_and_loss():
    model = recipe.load(PATH).model
    # main.py --arch resnet50, its fc replaced by Linear(2048, --low-dim 128), then L2 norm
    recipe.assert_values(model.backbone, dict(type='ResNet', depth=50))
    recipe.assert_values(model.neck, dict(type='LinearNeck', in_channels=2048, out_channels=128,
                                          norm_cfg=None))
    # main.py: NCEAverage(--low-dim 128, ndata = 1281167, --nce-k 4096, --nce-t 0.07,
    # --nce-m 0.5); NCEAverage draws (K + 1) indices for every sample
    recipe.assert_values(model.memory_bank, dict(length=1281167, feat_dim=128, momentum=0.5,
                                                 num_negatives=4096, sampling='per_sample'))
    recipe.assert_values(model.loss, dict(type='NCELoss', temperature=0.07))
    # lib/NCECriterion.py: eps = 1e-7
    loss = recipe.build_loss(dict(model.loss, num_data=1281167))
    assert loss.eps == 1e-7
    # main.py normalize: mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]
    pre = model.data_preprocessor
    np.testing.assert_allclose(pre.mean, np.array([0.485, 0.456, 0.406]) * 255, rtol=1e-3)
    np.testing.assert_allclose(pre.std, np.array([0.229, 0.224, 0.225]) * 255, rtol=1e-3)


def test_augmentation():
    pipeline = recipe.load(PATH).train_pipeline
    # main.py: RandomResizedCrop(224, scale=(0.2, 1.)), RandomGrayscale(p=0.2),
    # ColorJitter(0.4, 0.4, 0.4, 0.4), RandomHorizontalFlip(), in that order
    assert recipe.transform_types(pipeline) == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomGrayscale', 'ColorJitter',
        'RandomFlip', 'PackInputs']
    crop = recipe.build_transform(pipeline[1])
    assert (crop.scale, tuple(crop.crop_ratio_range)) == ((224, 224), (0.2, 1.0))
    assert pipeline[2]['prob'] == 0.2
    recipe.assert_values(pipeline[3], dict(brightness=0.4, contrast=0.4, saturation=0.4,
                                           hue=0.4))
    flip = recipe.build_transform(pipeline[4])
    assert (flip.prob, flip.direction) == (0.5, 'horizontal')
