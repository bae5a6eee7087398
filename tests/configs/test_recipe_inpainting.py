"""Context Encoder's ImageNet recipe: the data, hole and optimizer pinned to the reference code
(pathak22/context-encoder: train.lua, data/donkey_folder.lua, the README's centre-inpainting
command); the schedule, batch and reconstruction-only loss are documented choices
(configs/inpainting/README.md), pinned so that they change only on purpose."""
from tests.configs import recipe as R

CFG = 'inpainting/inpainting_r50_8xb32-coslr-200e_in1k.py'
FMNIST = 'inpainting/inpainting_r18-w32_1xb64-3000it_fmnist.py'


def test_optimizer_and_schedule():
    cfg = R.load(CFG)
    # train.lua opt: lr = 0.0002, beta1 = 0.5 (optim.adam's beta2 0.999, no weight decay)
    R.assert_values(R.optimizer(cfg), dict(type='Adam', lr=2e-4, betas=[0.5, 0.999],
                                           weight_decay=0.))
    assert set(R.effective_weight_decay(cfg).values()) == {0.}
    # choices: 8 x 32 = 256 images (train.lua: batchSize = 64, the lr unchanged), cosine over
    # 200 epochs (the README's command: niter=500 at a constant lr)
    assert R.name_gpus_batch(CFG) == (8, 32) and R.total_batch(cfg, 8) == 256
    (sched, ) = R.schedulers(cfg)
    R.assert_values(sched, dict(type='CosineAnnealingLR', T_max=200, by_epoch=True, begin=0,
                                end=200))
    R.assert_values(cfg.train_cfg, dict(type='EpochBasedTrainLoop', max_epochs=200))
    assert cfg.auto_scale_lr.base_batch_size == 256


def test_data_and_hole():
    cfg = R.load(CFG)
    pipeline = cfg.train_dataloader.dataset.pipeline
    # donkey_folder.lua trainHook: short side to loadSize (README: loadSize=350), random
    # fineSize (128) crop, hflip with probability 0.5
    assert R.transform_types(pipeline) == ['LoadImageFromFile', 'ResizeEdge', 'RandomCrop',
                                           'RandomFlip', 'InpaintingMask', 'PackInputs']
    R.assert_values(R.find_transform(pipeline, 'ResizeEdge'), dict(scale=350, edge='short'))
    R.assert_values(R.find_transform(pipeline, 'RandomCrop'), dict(crop_size=128))
    assert R.find_transform(pipeline, 'RandomFlip')['prob'] == 0.5
    # train.lua fDx: the centre fineSize/2 x fineSize/2 (64 x 64) region is dropped and filled
    # with the mean colour (here 0 = the normalisation mean)
    R.assert_values(R.find_transform(pipeline, 'InpaintingMask'), dict(mode='center', ratio=0.5))
    assert cfg.model.fill_value == 0.0
    # choice: reconstruction only (README: wtl2=0.999 with the adversarial loss, overlapPred=4)
    assert cfg.model.head.overlap_weight == 0.0


def test_fmnist_auto_scale_lr_is_its_own_batch():
    cfg = R.load(FMNIST)
    # its lr 0.03 is the shared budget's, for batch 64
    assert cfg.train_dataloader.batch_size == 64 and cfg.auto_scale_lr.base_batch_size == 64
