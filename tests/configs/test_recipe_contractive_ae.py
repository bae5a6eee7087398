"""The contractive auto-encoder's ImageNet config.  The paper (Rifai et al. 2011) gives no ImageNet
recipe; the code layer, loss and lambda are pinned to its reference code
(lisa-lab/DeepLearningTutorials code/cA.py, commit 15a2cefd), the optimizer to pytorch/examples
vae/main.py (commit 0a8329cf), data / batch / schedule to our Context Encoder config; the
choices (the deep Jacobian's projection estimate among them) are documented in
configs/contractive_ae/README.md and pinned so that they change only on purpose."""
from tests.configs import recipe as R

DAE = 'dae/dae_r50_8xb32-coslr-200e_in1k.py'
CFG = 'contractive_ae/contractive-ae_r50_8xb32-coslr-200e_in1k.py'


def test_code_layer_penalty_and_loss():
    cfg = R.load(CFG)
    # cA.py test_cA: cA(n_hidden=500), hidden = sigmoid(x W + b)
    R.assert_values(cfg.model.code_layer, dict(type='AECodeLayer', code_dim=500,
                                               activation='sigmoid'))
    # cA.py: cost = mean(L_rec) + contraction_level * mean(L_jacob), contraction_level=.1,
    # L_jacob = sum(J ** 2) / n_batchsize; choice: J of the whole encoder, one projection
    R.assert_values(cfg.model.penalty, dict(type='ContractivePenalty', mode='input',
                                            num_projections=1, loss_weight=0.1))
    # cA.py: L_rec = -sum(x log z + (1 - x) log(1 - z), axis=1), MNIST intensities in [0, 1]
    R.assert_values(cfg.model.loss, dict(type='AEReconstructionLoss', loss_type='bce',
                                         reduction='sum'))
    R.assert_values(cfg.model.data_preprocessor, dict(mean=[0., 0., 0.], std=[255., 255., 255.]))
    assert cfg.model.type == 'ContractiveAE' and cfg.model.backbone.depth == 50


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
