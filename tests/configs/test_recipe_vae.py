"""The variational auto-encoder's ImageNet config.  The paper (Kingma & Welling 2014) gives no
ImageNet recipe; latent size, likelihood, KL and optimizer are pinned to pytorch/examples
vae/main.py (commit 0a8329cf), data / batch / schedule to our Context Encoder config; the
choices are documented in configs/vae/README.md and pinned so that they change only on
purpose."""
from tests.configs import recipe as R

DAE = 'dae/dae_r50_8xb32-coslr-200e_in1k.py'
CFG = 'vae/vae_r50_8xb32-coslr-200e_in1k.py'
FMNIST = 'vae/vae_r18-w32_1xb64-3000it_fmnist.py'


def test_posterior_likelihood_and_kl():
    cfg = R.load(CFG)
    # main.py VAE: fc21 / fc22 = nn.Linear(400, 20), the mu and logvar heads
    R.assert_values(cfg.model.posterior, dict(type='AEGaussianPosterior', latent_dim=20))
    # main.py loss_function: BCE(recon_x, x, reduction='sum') on ToTensor() images in [0, 1]
    # + KLD = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), weight 1 (no annealing)
    R.assert_values(cfg.model.loss, dict(type='ELBOLoss', likelihood='bernoulli'))
    R.assert_values(cfg.model.data_preprocessor, dict(mean=[0., 0., 0.], std=[255., 255., 255.]))
    assert cfg.model.kl_weight == 1.0 and cfg.model.kl_warmup_iters == 0
    # choice: the pooled backbone features transfer (configs/vae/README.md)
    assert cfg.model.representation == 'backbone'
    assert cfg.model.type == 'VariationalAE' and cfg.model.backbone.depth == 50


def test_optimizer_data_and_schedule_are_the_denoising_aes():
    """The denoising auto-encoder's config (tests/configs/test_recipe_dae.py pins it: Adam lr 1e-3
    of pytorch/examples vae/main.py; the Context Encoder's data and schedule) without the
    corruption."""
    cfg, dae = R.load(CFG), R.load(DAE)
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'auto_scale_lr'):
        assert R.plain(cfg[key]) == R.plain(dae[key]), key
    for key in ('backbone', 'head', 'data_preprocessor', 'input_size'):
        assert R.plain(cfg.model[key]) == R.plain(dae.model[key]), key
    assert R.name_gpus_batch(CFG) == (8, 32) and R.total_batch(cfg, 8) == 256
    pipeline = R.plain(dae.train_dataloader.dataset.pipeline)
    assert R.plain(cfg.train_dataloader.dataset.pipeline) == \
        [t for t in pipeline if t['type'] != 'CorruptedPair']


def test_fmnist_keeps_the_likelihood_and_latents():
    cfg = R.load(FMNIST)
    R.assert_values(cfg.model.loss, dict(type='ELBOLoss', likelihood='bernoulli'))
    assert cfg.model.posterior.latent_dim == 20 and cfg.model.input_size == 32
    assert cfg.train_dataloader.batch_size == 64 and cfg.auto_scale_lr.base_batch_size == 64
