"""BigBiGAN's ImageNet recipe, pinned.  No official code exists.  Sources: the paper (Donahue &
Simonyan, NeurIPS 2019, arXiv:1907.02544: the joint discriminator's three hinge terms, the
encoder reading 256 px for a 128 px generator, batch 2048, a 120-d latent, a ResNet-50 encoder)
and the unofficial reimplementation RKorzeniowski/BigBiGAN-PyTorch (src/configs/hparams.py:
Adam lr 2e-4 for E+G and for D, betas (0.5, 0.999), disc_steps 2 per gen_steps 1,
spectral_norm True; src/model/losses.py: the hinge terms).  The network widths and the
schedule are our choices (configs/bigbigan/README.md), pinned so that they change only on
purpose."""
from tests.configs import recipe as R

CFG = 'bigbigan/bigbigan_r50_8xb256-500kit_in1k.py'
FMNIST = 'bigbigan/bigbigan_r18-w32_1xb64-3000it_fmnist.py'


def test_two_optimisers():
    cfg = R.load(CFG)
    ow = R.plain(cfg.optim_wrapper)
    assert ow['constructor'] == 'MultiOptimWrapperConstructor'
    assert set(ow) == {'constructor', 'type', 'generator', 'discriminator'}
    assert ow['type'] == 'OptimWrapper'  # for both (--amp replaces it)
    # hparams.py: lr_gen = lr_disc = 2e-4, betas (0.5, 0.999); no weight decay
    for name in ('generator', 'discriminator'):
        R.assert_values(ow[name]['optimizer'], dict(type='Adam', lr=2e-4, betas=[0.5, 0.999],
                                                    weight_decay=0.))
    # E (backbone + neck) is trained with G, against D
    assert ow['generator']['modules'] == ['generator', 'backbone', 'neck']
    assert ow['discriminator']['modules'] == ['discriminator']
    # choice: constant learning rates, one schedule per optimiser, 500k D steps
    for name in ('generator', 'discriminator'):
        (sched, ) = R.plain(cfg.param_scheduler[name])
        R.assert_values(sched, dict(type='ConstantLR', factor=1.0, by_epoch=False))
    R.assert_values(cfg.train_cfg, dict(type='IterBasedTrainLoop', max_iters=500000))
    assert cfg.model_wrapper_cfg.type == 'mmpretrain.MMSSLSeparateDistributedDataParallel'


def test_batch_latent_resolutions_and_loss():
    cfg = R.load(CFG)
    # the paper: batch 2048
    assert R.name_gpus_batch(CFG) == (8, 256) and R.total_batch(cfg, 8) == 2048
    assert cfg.auto_scale_lr.base_batch_size == 2048
    m = cfg.model
    # the paper: 120-d latent shared by E, G and D; G at 128 px, E at 256 px; ResNet-50 E
    assert m.neck.latent_dim == m.generator.latent_dim == m.discriminator.latent_dim == 120
    assert m.generator.out_size == m.gan_size == 128
    assert R.find_transform(cfg.train_dataloader.dataset.pipeline,
                            'RandomCrop')['crop_size'] == 256
    assert m.backbone.type == 'ResNet' and m.backbone.depth == 50
    # hparams.py: disc_steps 2, gen_steps 1, spectral_norm True (G and D); the paper: a
    # non-deterministic encoder, the three hinge terms with weight 1
    assert m.disc_steps == 2
    assert m.generator.spectral_norm and m.discriminator.spectral_norm
    assert m.neck.stochastic
    R.assert_values(m.loss, dict(type='GANHingeLoss', weights=dict(x=1.0, z=1.0, xz=1.0)))


def test_fmnist_keeps_the_optimisers_and_gets_the_shared_schedule():
    cfg, ref = R.load(FMNIST), R.load(CFG)
    assert R.plain(cfg.optim_wrapper) == R.plain(ref.optim_wrapper)
    assert cfg.train_dataloader.batch_size == 64 and cfg.train_cfg.max_iters == 3000
    for name in ('generator', 'discriminator'):
        types = [s['type'] for s in R.plain(cfg.param_scheduler[name])]
        assert types == ['LinearLR', 'CosineAnnealingLR']
    assert cfg.model.generator.out_size == 32 and cfg.model.gan_size is None
