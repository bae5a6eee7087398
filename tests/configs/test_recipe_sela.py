"""SeLa's ImageNet config pinned to the official code.

Reference: yukimasano/self-label, scripts/resnet.sh (hc 10, ncl 3000, bs 256, nepochs 400,
augs 3, nopts 100), main.py (get_parser defaults: --lr 0.08, --lrdrop 150, --wd -5, --lamb 25;
Optimizer.lr_schedule, Optimizer.optimize: optimize_times), data.py (get_aug_dataloader, augs
3) and sinkhornknopp.py (optimize_L_sk: err > 1e-1).
"""
from tests.configs import recipe as R

CFG = 'sela/sela_r50_8xb32-400e_in1k.py'


def test_batch_optimizer_schedule():
    cfg = R.load(CFG)
    assert R.name_gpus_batch(CFG) == (8, 32) and R.total_batch(cfg, 8) == 256
    # SGD(momentum 0.9, weight_decay 10 ** --wd = 1e-5, lr --lr 0.08) on every parameter
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=0.08, momentum=0.9, weight_decay=1e-5))
    assert set(R.effective_weight_decay(cfg).values()) == {1e-5}
    # lr_schedule: lr * 0.1 ** (epoch // 150) before epoch 350, lr * 0.1 ** 3 from it
    assert R.schedulers(cfg) == [dict(type='MultiStepLR', by_epoch=True,
                                      milestones=[150, 300, 350], gamma=0.1)]
    assert cfg.train_cfg.max_epochs == 400


def test_model_and_labels():
    cfg = R.load(CFG)
    # resnet.sh: --hc 10 --ncl 3000; the heads on the 2048-d pooled features
    R.assert_values(cfg.model.head, dict(type='SeLaHead', in_channels=2048, num_classes=3000,
                                         num_heads=10))
    assert cfg.model.num_samples == 1281167
    (hook, ) = [h for h in cfg.custom_hooks if h.type == 'SeLaHook']
    # --nopts 100, --lamb 25, optimize_L_sk stops at err <= 0.1
    R.assert_values(hook, dict(num_opts=100, lamb=25.0, tol=0.1))
    # pseudo_loader = train_loader: the labels come from the training augmentation
    assert R.plain(hook.pipeline) == R.plain(cfg.train_dataloader.dataset.pipeline)


def test_augmentation():
    pipeline = R.load(CFG).train_dataloader.dataset.pipeline
    # data.py augs 3: RandomResizedCrop(224), RandomGrayscale(p=0.2),
    # ColorJitter(0.4, 0.4, 0.4, 0.4), RandomHorizontalFlip()
    assert R.transform_types(pipeline) == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomGrayscale', 'ColorJitter',
        'RandomFlip', 'PackInputs']
    crop = R.build_transform(R.find_transform(pipeline, 'RandomResizedCrop'))
    assert (crop.scale, tuple(crop.crop_ratio_range)) == ((224, 224), (0.08, 1.0))
    assert R.find_transform(pipeline, 'RandomGrayscale')['prob'] == 0.2
    R.assert_values(R.find_transform(pipeline, 'ColorJitter'),
                    dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4))
