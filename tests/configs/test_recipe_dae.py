"""The denoising auto-encoder's ImageNet config.  The papers (Vincent et al. 2008 / 2010) give no
ImageNet recipe; the corruption and loss are pinned to their reference code
(lisa-lab/DeepLearningTutorials code/dA.py, commit 04402266), the optimizer to pytorch/examples
vae/main.py (commit 0a8329cf), data / batch / schedule to our Context Encoder config; the
choices are documented in configs/dae/README.md and pinned so that they change only on purpose."""
from tests.configs import recipe as R

CFG = 'dae/dae_r50_8xb32-coslr-200e_in1k.py'
FMNIST = 'dae/dae_r18-w32_1xb64-3000it_fmnist.py'


def test_corruption_and_loss():
    cfg = R.load(CFG)
    pipeline = cfg.train_dataloader.dataset.pipeline
    # dA.py get_corrupted_input: binomial(p=1 - corruption_level) * input on every input value;
    # test_dA: corruption_level=0.3
    (corrupt, ) = R.find_transform(pipeline, 'CorruptedPair')['corruptions']
    R.assert_values(corrupt, dict(type='MaskingNoise', prob=0.3, fill=0., per_channel=True))
    # dA.py get_cost_updates: L = -sum(x log z + (1 - x) log(1 - z), axis=1); cost = mean(L),
    # on MNIST intensities in [0, 1]
    R.assert_values(cfg.model.loss, dict(type='AEReconstructionLoss', loss_type='bce',
                                         reduction='sum'))
    R.assert_values(cfg.model.data_preprocessor, dict(mean=[0., 0., 0.], std=[255., 255., 255.]))
    assert cfg.model.type == 'DenoisingAE' and cfg.model.backbone.depth == 50


def test_optimizer_data_and_schedule():
    cfg = R.load(CFG)
    # pytorch/examples vae/main.py: optim.Adam(model.parameters(), lr=1e-3) (torch defaults)
    R.assert_values(R.optimizer(cfg), dict(type='Adam', lr=1e-3, betas=[0.9, 0.999],
                                           weight_decay=0.))
    # choices (the Context Encoder's ImageNet config): 128 px crops of the 350 px short side,
    # 8 x 32 images, cosine over 200 epochs
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert R.transform_types(pipeline) == ['LoadImageFromFile', 'ResizeEdge', 'RandomCrop',
                                           'RandomFlip', 'CorruptedPair', 'PackInputs']
    R.assert_values(R.find_transform(pipeline, 'ResizeEdge'), dict(scale=350, edge='short'))
    R.assert_values(R.find_transform(pipeline, 'RandomCrop'), dict(crop_size=128))
    assert cfg.model.input_size == 128
    assert R.name_gpus_batch(CFG) == (8, 32) and R.total_batch(cfg, 8) == 256
    (sched, ) = R.schedulers(cfg)
    R.assert_values(sched, dict(type='CosineAnnealingLR', T_max=200, by_epoch=True, end=200))
    R.assert_values(cfg.train_cfg, dict(type='EpochBasedTrainLoop', max_epochs=200))
    assert cfg.auto_scale_lr.base_batch_size == 256


def test_fmnist_masks_whole_grey_pixels():
    cfg = R.load(FMNIST)
    (corrupt, ) = R.find_transform(cfg.train_dataloader.dataset.pipeline,
                                   'CorruptedPair')['corruptions']
    R.assert_values(corrupt, dict(type='MaskingNoise', prob=0.3, per_channel=False))
    assert cfg.train_dataloader.batch_size == 64 and cfg.auto_scale_lr.base_batch_size == 64
    assert cfg.model.input_size == 32
