"""What the denoising, contractive and variational auto-encoders share: the reconstruction loss
against numpy, the decoder sized from any backbone, the ImageNet configs' two training steps, and
one 2-process gloo run of each Fashion-MNIST config (DDP state equality)."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.dataset import default_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mmssl_ext  # noqa: F401
from mmssl_ext.models.heads.ae_decoder import AEDecoderHead
from mmssl_ext.models.losses.ae_reconstruction import AEReconstructionLoss
from mmssl_ext.registry import MODELS, TRANSFORMS
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO, free_port
from tests.models.refresh_helpers import run, tiny_opts

FMNIST = {
    'dae': f'{REPO}/configs/dae/dae_r18-w32_1xb64-3000it_fmnist.py',
    'cae': f'{REPO}/configs/contractive_ae/contractive-ae_r18-w32_1xb64-3000it_fmnist.py',
    'vae': f'{REPO}/configs/vae/vae_r18-w32_1xb64-3000it_fmnist.py',
}
IN1K = {
    'dae': f'{REPO}/configs/dae/dae_r50_8xb32-coslr-200e_in1k.py',
    'cae': f'{REPO}/configs/contractive_ae/contractive-ae_r50_8xb32-coslr-200e_in1k.py',
    'vae': f'{REPO}/configs/vae/vae_r50_8xb32-coslr-200e_in1k.py',
}
#: a ResNet-18 at width 8 (64 channels) instead of the configs' width 32
TINY_NET = ['model.backbone.stem_channels=8', 'model.backbone.base_channels=8',
            'model.head.fc_channels=16']


def _rand(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------- the reconstruction loss
@pytest.mark.parametrize('reduction', ['mean', 'sum'])
def test_reconstruction_loss_against_numpy(reduction):
    pred = _rand((3, 2, 4, 4), 0)
    target = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    p, t = pred.double().numpy(), target.double().numpy()
    sq = (p - t) ** 2
    s = 1 / (1 + np.exp(-p))
    ce = -(t * np.log(s) + (1 - t) * np.log(1 - s))
    for loss_type, err in (('mse', sq), ('bce', ce)):
        ref = err.mean() if reduction == 'mean' else err.reshape(3, -1).sum(1).mean()
        got = AEReconstructionLoss(loss_type, reduction, loss_weight=2.0)(pred, target)
        assert got.item() == pytest.approx(2 * ref, rel=1e-5), loss_type


def test_reconstruction_loss_errors():
    with pytest.raises(ValueError, match='loss_type must be one of'):
        AEReconstructionLoss('l1')
    with pytest.raises(ValueError, match='reduction must be one of'):
        AEReconstructionLoss('mse', 'none')
    with pytest.raises(ValueError, match=r"needs targets in \[0, 1\].*std=\[255"):
        AEReconstructionLoss('bce')(torch.zeros(1, 3), torch.tensor([[0.0, 0.5, 2.0]]))
    with pytest.raises(ValueError, match='differ in shape'):
        AEReconstructionLoss()(torch.zeros(1, 3), torch.zeros(1, 4))


# ------------------------------------------------------------------------------- the decoder
def build_ae(kind, init=False, **kw):
    """A tiny auto-encoder of ``kind`` ('dae', 'cae', 'vae'): ResNet-18 at width 8, 16-d decoder
    map; ``kw`` overrides the model config (shared by test_dae / test_contractive_ae /
    test_vae)."""
    backbone = dict(type='ResNet', depth=18, stem_channels=8, base_channels=8)
    cfg = dict(type={'dae': 'DenoisingAE', 'cae': 'ContractiveAE', 'vae': 'VariationalAE'}[kind],
               backbone=backbone, head=dict(type='AEDecoderHead', fc_channels=16))
    if kind == 'cae':
        cfg['code_layer'] = dict(type='AECodeLayer', code_dim=6)
    if kind == 'vae':
        cfg['posterior'] = dict(type='AEGaussianPosterior', latent_dim=5)
    cfg.update(kw)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    if init:
        model.init_weights()
    return model


@pytest.mark.parametrize('input_size,feat', [(32, 1), (64, 2)])
def test_decoder_sized_from_the_backbone(input_size, feat):
    for kind, code in (('dae', 64), ('cae', 6), ('vae', 5)):
        model = build_ae(kind, input_size=input_size)
        head = model.head
        assert (head.in_channels, head.feat_size, head.output_stride) == \
            (code, (feat, feat), input_size // feat), kind
        out = head(torch.zeros(2, code))
        assert out.shape == (2, 3, input_size, input_size)
    # any backbone: a ResNet-50 has 2048 channels, the decoder follows
    deep = build_ae('dae', backbone=dict(type='ResNet', depth=50, base_channels=8))
    assert deep.head.in_channels == 256 and deep.feat_channels == 256


def test_decoder_and_model_errors():
    with pytest.raises(ValueError, match='head.in_channels=7 but the code has 64'):
        build_ae('dae', head=dict(type='AEDecoderHead', in_channels=7))
    with pytest.raises(ValueError, match='decoder outputs .* input_size=32'):
        build_ae('dae', head=dict(type='AEDecoderHead', feat_size=2))
    with pytest.raises(ValueError, match="not a power-of-2 stride.*backbone's stride"):
        build_ae('dae', input_size=40)
    with pytest.raises(ValueError, match='input_size must be a positive int'):
        build_ae('dae', input_size=0)
    with pytest.raises(ValueError, match='expected a B x 64 code'):
        AEDecoderHead(64, 1, 32)(torch.zeros(2, 63))
    model = build_ae('vae')
    with pytest.raises(ValueError, match=r'expected B x C x 32 x 32 images .*model.input_size'):
        model.loss([torch.zeros(2, 3, 16, 16)], None)
    with pytest.raises(ValueError, match='one view per sample, got 2.*CorruptedPair'):
        model.loss([torch.zeros(2, 3, 32, 32)] * 2, None)


# ------------------------------------------------------------------------ the ImageNet configs
@pytest.mark.parametrize('kind', sorted(IN1K))
def test_in1k_config_two_training_steps(kind):
    """The config's pipeline, loss and optimizer for two steps, on a ResNet-18 of width 8 with
    plain BatchNorm (the ResNet-50 / SyncBN of the config only change the sizes)."""
    cfg = load_config(IN1K[kind])
    cfg.model.backbone.update(depth=18, stem_channels=8, base_channels=8,
                              norm_cfg=dict(type='BN'))
    cfg.model.head.update(fc_channels=16, norm_cfg=dict(type='BN'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
        pipeline = [TRANSFORMS.build(s) for s in cfg.train_dataloader.dataset.pipeline[1:]]
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.init_weights()
    rng = np.random.RandomState(0)
    samples = []
    for _ in range(2):
        res = dict(img=rng.randint(0, 256, (150, 180, 3), dtype=np.uint8))
        for t in pipeline:
            res = t(res)
        samples.append(res)
    data = default_collate(samples)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    for _ in range(2):
        logs = model.train_step(data, wrapper)
        assert all(torch.isfinite(v) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))


# ------------------------------------------------------------------- 2 gloo ranks, all three
def _ddp_worker(rank, port, work):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE='2')
    torch.set_num_threads(1)
    import mmengine.runner.loops as loops
    from tests.conftest import _NoSleepTime
    loops.time = _NoSleepTime()
    tree, out = osp.join(work, 'tree'), osp.join(work, 'records')
    for kind, config in sorted(FMNIST.items()):
        os.makedirs(osp.join(out, kind), exist_ok=True)
        run(config, tiny_opts(tree, 8, 2, 3) + TINY_NET, osp.join(work, kind),
            osp.join(out, kind), keys=[], launcher='pytorch')


def test_two_gloo_ranks_keep_the_same_state(tiny_tree, tmp_path):
    """Each Fashion-MNIST config for 3 iterations on 2 processes (``--launcher pytorch``): the
    weights, the optimizer-updated heads and the VAE's KL step counter are the same on both
    ranks; only BatchNorm's running statistics (per rank without SyncBN) differ."""
    os.symlink(tiny_tree, tmp_path / 'tree')
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for kind in sorted(FMNIST):
        recs = [torch.load(tmp_path / 'records' / kind / f'rank{r}.pth', weights_only=False)
                for r in range(2)]
        assert recs[0]['world_size'] == 2
        a, b = recs[0]['state'], recs[1]['state']
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert all('running_' in k for k in differ), (kind, differ)
        assert differ, f'{kind}: the ranks saw the same data (running statistics equal)'
    assert int(recs[0]['state']['kl_steps']) == 3  # the VAE's (sorted: cae, dae, vae last)
