"""CMC's ImageNet recipe pinned to the reference code (HobbitLong/CMC: train_CMC.py defaults,
the README's ResNet command ``--model resnet50v1 --batch_size 128`` on 4 GPUs, models/resnet.py,
NCE/NCEAverage.py, util.py)."""
import pytest
from mmengine.registry import DefaultScope

from mmssl_ext.registry import MODELS
from tests.configs import recipe as R

CFG = 'cmc/cmc_r50_8xb32-240e_in1k.py'
OLD_NAME = 'cmc/cmc_r50_8xb32-200e_in1k.py'  # deprecated alias of CFG

# train_CMC.py parse_option: --epochs 240, --lr_decay_epochs '120,160,200', --lr_decay_rate 0.1,
# --learning_rate 0.03 (for the README's --batch_size 128)
EPOCHS, DECAY_EPOCHS, DECAY_RATE, LR, LR_BATCH = 240, [120, 160, 200], 0.1, 0.03, 128


def test_batch_optimizer():
    cfg = R.load(CFG)
    # README: 4 GPUs, --batch_size 128 through DataParallel = 32 images per GPU; here 8 x 32
    assert R.name_gpus_batch(CFG) == (8, 32) and R.total_batch(cfg, 8) == 256
    # set_optimizer: SGD(model.parameters(), lr, momentum 0.9, weight_decay 1e-4), lr scaled
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=LR * 256 / LR_BATCH, momentum=0.9,
                                           weight_decay=1e-4))
    assert not R.optimizer(cfg).get('nesterov', False)
    assert 'paramwise_cfg' not in cfg.optim_wrapper
    assert set(R.effective_weight_decay(cfg).values()) == {1e-4}


def test_schedule():
    cfg = R.load(CFG)
    (sched, ) = R.schedulers(cfg)
    R.assert_values(sched, dict(type='MultiStepLR', by_epoch=True, milestones=DECAY_EPOCHS,
                                gamma=DECAY_RATE))
    R.assert_values(cfg.train_cfg, dict(type='EpochBasedTrainLoop', max_epochs=EPOCHS))
    # util.adjust_learning_rate: epochs count from 1, lr * rate ** sum(epoch > decay_epochs)
    official = [DECAY_RATE ** sum(e > d for d in DECAY_EPOCHS) for e in range(1, EPOCHS + 1)]
    ours = [sched['gamma'] ** sum(m <= e for m in sched['milestones']) for e in range(EPOCHS)]
    assert ours == pytest.approx(official, rel=1e-9)


def test_encoders_banks_loss():
    cfg = R.load(CFG)
    model = cfg.model
    # models/resnet.py ResNetV1('resnet50'): resnet50(in_channel=1, width=0.5) for L and
    # resnet50(in_channel=2, width=0.5) for ab: conv1 64 channels, stages int(64 * 0.5) = 32 wide;
    # BatchNorm2d per GPU (DataParallel), 32 images each
    for backbone, channels in zip(model.backbones, (1, 2)):
        R.assert_values(backbone, dict(type='ResNet', depth=50, in_channels=channels,
                                       stem_channels=64, base_channels=32,
                                       norm_cfg={'type': 'BN'}))
    assert cfg.train_dataloader.batch_size == 128 // 4
    assert R.plain(model.data_preprocessor.view_channels) == [[0], [1, 2]]
    # ResNet.fc: Linear(base * 8 * 4 = 1024, low_dim = --feat_dim 128), then L2 normalisation
    R.assert_values(model.neck, dict(type='LinearNeck', in_channels=1024, out_channels=128))
    # NCEAverage(feat_dim 128, n_data, --nce_k 16384, --nce_t 0.07, --nce_m 0.5): one draw of
    # B x K indices per step (multinomial.draw(batchSize * (K + 1))), used for both memories
    R.assert_values(model.memory_bank, dict(type='MemoryBank', length=1281167, feat_dim=128,
                                            num_negatives=16384, momentum=0.5,
                                            sampling='per_sample'))
    assert model.loss.temperature == 0.07
    # --softmax (NCESoftmaxLoss); the reference's default is NCE: a documented choice
    assert model.loss.type == 'InfoNCELoss'
    # train_CMC.py get_train_loader: Lab normalised by the centre / half-range of each channel
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pre = MODELS.build(R.plain(model.data_preprocessor))
    ref_mean = [(0 + 100) / 2, (-86.183 + 98.233) / 2, (-107.857 + 94.478) / 2]
    ref_std = [(100 - 0) / 2, (86.183 + 98.233) / 2, (107.857 + 94.478) / 2]
    assert pre.lab_mean.flatten().tolist() == pytest.approx(ref_mean, rel=1e-6)
    assert pre.lab_std.flatten().tolist() == pytest.approx(ref_std, rel=1e-6)


def test_augmentation():
    pipeline = R.load(CFG).train_dataloader.dataset.pipeline
    # get_train_loader: RandomResizedCrop(224, scale=(crop_low, 1.)) with crop_low 0.08 for
    # every model but AlexNet on ImageNet, RandomHorizontalFlip(), no colour augmentation
    assert R.transform_types(pipeline) == ['LoadImageFromFile', 'RandomResizedCrop',
                                           'RandomFlip', 'PackInputs']
    crop = R.find_transform(pipeline, 'RandomResizedCrop')
    ratio_range = tuple(R.build_transform(crop).crop_ratio_range)
    assert crop['scale'] == 224 and ratio_range == (0.08, 1.0)
    assert R.find_transform(pipeline, 'RandomFlip')['prob'] == 0.5


def test_deprecated_name_is_the_same_recipe():
    assert R.load(OLD_NAME).pretty_text == R.load(CFG).pretty_text
