"""BigBiGAN: the hinge terms against a loop, each network updated only by its own optimiser
(no gradient leaks into the other's), the multi-optimiser constructor's errors, the sample grid
hook, the ImageNet config's two-resolution step, exact resume of both optimisers and schedules
through tools/train.py, and 2-rank gloo DDP with per-network wrappers."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import DefaultScope
from PIL import Image

import mmssl_ext  # noqa: F401
from mmssl_ext.engine.hooks.gan_samples import image_grid
from mmssl_ext.engine.multi_optim import MultiOptimWrapperConstructor
from mmssl_ext.models.losses.gan_hinge import GANHingeLoss
from mmssl_ext.registry import HOOKS, MODELS
from tests.cli.test_exact_resume import K, N, _COMMON, _differing, _logged, _model, _train
from tests.helpers import REPO, free_port
from tests.models.refresh_helpers import model_of

FMNIST_CFG = osp.join(REPO, 'configs/bigbigan/bigbigan_r18-w32_1xb64-3000it_fmnist.py')
IN1K_CFG = osp.join(REPO, 'configs/bigbigan/bigbigan_r50_8xb256-500kit_in1k.py')
LATENT = 16
#: a seconds-long BigBiGAN: ResNet-18 at width 8, tiny G and D, 16-d latent
TINY = {'model.backbone.stem_channels': 8, 'model.backbone.base_channels': 8,
        'model.neck.in_channels': 64, 'model.neck.hid_channels': 32,
        'model.neck.latent_dim': LATENT, 'model.generator.latent_dim': LATENT,
        'model.generator.channels': [16, 8, 8], 'model.discriminator.latent_dim': LATENT,
        'model.discriminator.channels': [8, 8, 16, 16], 'model.discriminator.mlp_channels': 32,
        'model.discriminator.mlp_layers': 2}
EG_MODULES, D_MODULES = ('generator', 'backbone', 'neck'), ('discriminator', )


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: the tiny networks' ops are too small to split, and two
    threads wait on each other on a busy 2-core machine (10x slower in the resume test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(path=FMNIST_CFG, **extra):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({**TINY, **extra})
    return cfg


def _build(cfg):
    optim_cfg = cfg.optim_wrapper.copy()
    assert optim_cfg.pop('constructor') == 'MultiOptimWrapperConstructor'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
        wrappers = MultiOptimWrapperConstructor(optim_cfg)(model)
    return model, wrappers


def _batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.rand(n, 3, size, size, generator=g) * 255],
                data_samples=[None] * n)


# ------------------------------------------------------------------------------------ loss
def test_hinge_terms_against_a_loop():
    rng = np.random.RandomState(0)
    weights = dict(x=1.0, z=0.5, xz=2.0)
    real = {k: rng.randn(5) * 2 for k in weights}
    fake = {k: rng.randn(5) * 2 for k in weights}
    loss = GANHingeLoss(weights)
    t = lambda d: {k: torch.tensor(v) for k, v in d.items()}  # noqa: E731
    d_terms = loss.discriminator(t(real), t(fake))
    eg_terms = loss.generator(t(real), t(fake))
    for k, w in weights.items():
        d_ref = eg_ref = 0.0
        for i in range(5):  # h(t) = max(0, 1 - t): real pairs y = +1, fake pairs y = -1
            d_ref += (max(0.0, 1 - real[k][i]) + max(0.0, 1 + fake[k][i])) / 5
            eg_ref += (real[k][i] - fake[k][i]) / 5
        np.testing.assert_allclose(d_terms[f'loss_d_{k}'].item(), w * d_ref, rtol=1e-12)
        np.testing.assert_allclose(eg_terms[f'loss_eg_{k}'].item(), w * eg_ref, rtol=1e-12)
    # scores beyond the margins: D's loss is 0, E+G's still pushes
    far = {k: torch.full((3, ), 2.0) for k in weights}
    assert all(v == 0 for v in loss.discriminator(far, {k: -v for k, v in far.items()}).values())
    with pytest.raises(ValueError, match=r"scored terms \['x', 'xz'\].*weighs"):
        loss.discriminator({'x': far['x'], 'xz': far['x']}, {'x': far['x'], 'xz': far['x']})
    with pytest.raises(ValueError, match='weights must map'):
        GANHingeLoss(dict(x=-1.0))


# ------------------------------------------------------------------------------ networks
def test_networks_shapes_spectral_norm_and_errors():
    model, _ = _build(_cfg())
    z = torch.randn(3, LATENT)
    img = model.generate(z)
    assert img.shape == (3, 3, 32, 32) and img.abs().max() <= 1
    scores = model.discriminator(img, z)
    assert set(scores) == {'x', 'z', 'xz'} and all(v.shape == (3, ) for v in scores.values())
    # spectral norm on G's and D's layers, not on the encoder head
    sn = lambda m: [n for n, _ in m.named_modules() if n.endswith('parametrizations')]  # noqa
    assert len(sn(model.generator)) == 1 + 3 * 3 + 1 and len(sn(model.discriminator)) > 10
    assert not sn(model.neck) and not sn(model.backbone)
    x = torch.randn(2, 3, 32, 32)
    mu, sigma = model.neck(model.backbone(x))
    assert mu.shape == sigma.shape == (2, LATENT) and (sigma > 0).all()
    # z^ = mu + sigma * eps, eps from torch's generator; a deterministic head gives mu
    model.eval()  # BatchNorm statistics fixed: the same mu in each call
    torch.manual_seed(3)
    z_hat = model.encode(x)
    torch.manual_seed(3)
    eps = torch.randn(2, LATENT)
    mu, sigma = model.neck(model.backbone(x))
    torch.testing.assert_close(z_hat, mu + sigma * eps)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        det = MODELS.build(_cfg(**{'model.neck.stochastic': False}).model).eval()
    mu, sigma = det.neck(det.backbone(x))
    assert sigma is None and torch.equal(det.encode(x), mu)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match='give 32 px, not out_size=64'):
            MODELS.build(dict(type='BigBiGANGenerator', latent_dim=4, out_size=64,
                              channels=[8, 8, 8]))
        with pytest.raises(ValueError, match='same length'):
            MODELS.build(dict(type='BigBiGANDiscriminator', latent_dim=4, channels=[8, 8],
                              downsample=[True]))
        for key, value, match in [('model.disc_steps', 0, 'disc_steps'),
                                  ('model.neck.latent_dim', 8, 'latent sizes differ'),
                                  ('model.gan_size', 16, 'gan_size=16 but')]:
            with pytest.raises(ValueError, match=match):
                MODELS.build(_cfg(**{key: value}).model)


# ------------------------------------------------------------------------------ training
def test_each_network_only_by_its_own_optimiser():
    """Step 1 is a D step, step 2 a D step and an E+G step (disc_steps=2): at each optimiser
    step exactly its own networks hold gradients, and the other networks' weights stay."""
    torch.manual_seed(0)
    model, wrappers = _build(_cfg())
    own = {'discriminator': D_MODULES, 'generator': EG_MODULES}
    for key, modules in own.items():
        ids = {id(p) for m in modules for p in getattr(model, m).parameters()}
        assert {id(p) for g in wrappers[key].param_groups for p in g['params']} == ids
    names = {n: n.split('.')[0] for n, _ in model.named_parameters()}
    seen = []

    def record(key, step):
        def wrapped(*args, **kwargs):
            with_grad = {names[n] for n, p in model.named_parameters() if p.grad is not None}
            without = {names[n] for n, p in model.named_parameters() if p.grad is None}
            seen.append((key, with_grad, without))
            return step(*args, **kwargs)
        return wrapped

    for key in own:
        wrappers[key].optimizer.step = record(key, wrappers[key].optimizer.step)
    params = lambda: {n: p.detach().clone() for n, p in model.named_parameters()}  # noqa
    before = params()
    out1 = model.train_step(_batch(seed=1), wrappers)
    after1 = params()
    out2 = model.train_step(_batch(seed=2), wrappers)
    after2 = params()
    assert [s[0] for s in seen] == ['discriminator', 'discriminator', 'generator']
    for key, with_grad, without in seen:
        assert with_grad == set(own[key]), f'{key} step: gradients in {with_grad}'
        assert not (without & set(own[key])), f'{key} step: no gradient in {without}'
    changed = lambda a, b: {names[n] for n in a if not torch.equal(a[n], b[n])}  # noqa
    assert changed(before, after1) == {'discriminator'}
    assert changed(after1, after2) == {'discriminator', *EG_MODULES}
    assert all(p.grad is None for p in model.parameters())  # zeroed after each step
    assert 'loss_eg' not in out1 and {'loss', 'loss_d_xz', 'loss_eg', 'loss_eg_xz'} <= set(out2)
    assert int(model.num_d_steps) == 2
    with pytest.raises(TypeError, match="two optimisers.*MultiOptimWrapperConstructor"):
        model.train_step(_batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    # a whole-model DDP (mmengine's default wrapper) runs forward(mode='loss'): named
    import mmssl_ext.models.algorithms.bigbigan as bigbigan_module
    world_size, bigbigan_module.get_world_size = bigbigan_module.get_world_size, lambda: 2
    try:
        with pytest.raises(RuntimeError, match='MMSSLSeparateDistributedDataParallel'):
            model(_batch()['inputs'], mode='loss')
    finally:
        bigbigan_module.get_world_size = world_size


def test_multi_optim_constructor_errors():
    model, _ = _build(_cfg())
    adam = dict(type='Adam', lr=1e-3)
    bad = [(dict(generator=dict(optimizer=adam, modules=['generator', 'encoder'])),
            KeyError, r"no sub-module \['encoder'\]"),
           (dict(generator=dict(optimizer=adam, modules=['generator', 'backbone', 'neck']),
                 discriminator=dict(optimizer=adam, modules=['discriminator', 'neck'])),
            ValueError, "'neck' is in both"),
           (dict(generator=dict(optimizer=adam, modules=['generator']),
                 discriminator=dict(optimizer=adam)),
            ValueError, r"\['backbone', 'neck'\] have no optimiser"),
           (dict(generator='Adam'), ValueError, 'one dict per optimiser'),
           (dict(optimizer=adam, generator=dict(optimizer=adam)), ValueError,
            'is for one optimiser'),
           (dict(type='AmpOptimWrapper', generator=dict(type='OptimWrapper', optimizer=adam)),
            ValueError, "optim_wrapper.type='AmpOptimWrapper' applies to every optimiser but "
                        "optim_wrapper.generator.type='OptimWrapper'")]
    for cfg, error, match in bad:
        with pytest.raises(error, match=match):
            MultiOptimWrapperConstructor(cfg)(model)
    # top-level wrapper settings (what tools/train.py --amp sets) reach every optimiser
    from mmssl_ext.engine.cpu_amp import CPUAmpOptimWrapper
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrappers = MultiOptimWrapperConstructor(dict(
            type='CPUAmpOptimWrapper', dtype='bfloat16',
            generator=dict(optimizer=adam, modules=list(EG_MODULES)),
            discriminator=dict(optimizer=adam)))(model)
    assert isinstance(wrappers, OptimWrapperDict)
    assert list(wrappers.keys()) == ['generator', 'discriminator']
    assert all(type(w) is CPUAmpOptimWrapper for w in wrappers.values())


def test_in1k_config_encoder_reads_larger_images():
    """The ImageNet recipe's step at shrunk widths: E reads 32 px, G and D work at 16 px."""
    torch.manual_seed(0)
    cfg = _cfg(IN1K_CFG, **{'model.backbone.depth': 18, 'model.backbone.norm_cfg.type': 'BN',
                            'model.generator.norm_cfg.type': 'BN', 'model.neck.num_layers': 1,
                            'model.generator.out_size': 16, 'model.gan_size': 16,
                            'model.generator.channels': [8, 8],
                            'model.discriminator.channels': [8, 8],
                            'model.discriminator.downsample': [True, False]})
    model, wrappers = _build(cfg)
    x = model.data_preprocessor(_batch(n=2), True)['inputs'][0]
    assert model.to_gan_space(x).shape == (2, 3, 16, 16)
    # un-normalised to [-1, 1]: the mean of 2 x 2 blocks of the raw pixels / 127.5 - 1 (the
    # preprocessor's to_rgb reverses the channels)
    raw = _batch(n=2)['inputs'][0].flip(1)
    expected = raw.view(2, 3, 16, 2, 16, 2).mean(dim=(3, 5)) / 127.5 - 1
    torch.testing.assert_close(model.to_gan_space(x), expected, rtol=1e-5, atol=1e-5)
    for seed in range(2):
        out = model.train_step(_batch(n=2, seed=seed), wrappers)
    assert all(torch.isfinite(v) for v in out.values()) and 'loss_eg' in out


def test_quality_benchmark_rescales_both_schedules():
    from benchmarks.quality import rescale_schedule
    cfg = Config.fromfile(FMNIST_CFG)
    rescale_schedule(cfg, 300)
    for name in ('generator', 'discriminator'):
        warm, cos = cfg.param_scheduler[name]
        assert (warm.end, cos.begin, cos.T_max, cos.end) == (10, 10, 290, 300)


# ------------------------------------------------------------------------------ hook
def test_image_grid_layout():
    imgs = -torch.ones(6, 1, 4, 5)
    imgs[5] = 1.0
    grid = image_grid(imgs, nrow=4, padding=2)
    assert grid.shape == (2 * 4 + 3 * 2, 4 * 5 + 5 * 2, 3) and grid.dtype == np.uint8
    assert (grid[2:6, 2:7] == 0).all()  # image 0 (-1 -> 0)
    assert (grid[8:12, 9:14] == 255).all()  # image 5: row 1, column 1 (+1 -> 255)
    assert grid[:2].max() == 0 and grid[:, :2].max() == 0  # padding


# ---------------------------------------------------------------------- resume (engine)
def _tiny_opts(tree, n_img=8, batch=4, max_iters=N):
    opts = [f'{k}={v}'.replace(' ', '') for k, v in TINY.items()]
    return opts + [
        f'train_dataloader.dataset.data_root={tree}', f'train_dataloader.batch_size={batch}',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.indices={n_img}', 'custom_hooks.0.interval=3',
        # 16 px images: G from 4 x 4 in two blocks
        'train_dataloader.dataset.pipeline.1.scale=16', 'model.generator.channels=[16,8]',
        'model.generator.out_size=16',
        'custom_hooks.0.num_samples=6', 'custom_hooks.0.nrow=4', *_COMMON,
        f'train_cfg.max_iters={max_iters}']


def _optim_states(runner):
    return {name: w.optimizer.state_dict()['state'] for name, w in runner.optim_wrapper.items()}


def test_exact_resume_two_optimisers_and_sample_grids(tiny_tree, tmp_path):
    """Interrupted after iteration 3 (a D-only step: the E+G steps are 2, 4, 6) and resumed:
    the same losses, weights (spectral-norm vectors, BatchNorm statistics, D-step counter),
    both optimisers' states and both schedules as the uninterrupted run; mmengine's resume
    alone (no RNG state) differs.  The uninterrupted run wrote the sample grids."""
    opts = _tiny_opts(tiny_tree)
    full = _train(FMNIST_CFG, str(tmp_path / 'full'), opts)
    ref = _logged(full)
    assert sorted(ref) == list(range(1, N + 1))
    assert ['loss_eg' in ref[i] for i in (1, 2)] == [False, True]
    work = str(tmp_path / 'interrupted')
    first = _train(FMNIST_CFG, work, opts, interrupt_at=K)
    assert first.iter == K
    resumed = _train(FMNIST_CFG, work, opts, resume='auto')
    got = _logged(resumed)
    for i in range(K + 1, N + 1):
        assert got[i] == ref[i], f'iteration {i}: resumed {got[i]} != uninterrupted {ref[i]}'
    state_a, state_b = _model(full).state_dict(), _model(resumed).state_dict()
    assert any('parametrizations' in k and k.endswith('_u') for k in state_a)
    assert int(state_a['num_d_steps']) == N
    assert not _differing(state_a, state_b)
    opt_a, opt_b = _optim_states(full), _optim_states(resumed)
    assert set(opt_a) == {'generator', 'discriminator'}
    for name in opt_a:
        assert opt_a[name].keys() == opt_b[name].keys() and opt_a[name]
        for pid in opt_a[name]:
            assert not _differing(opt_a[name][pid], opt_b[name][pid]), f'{name} state {pid}'
    for name in ('generator', 'discriminator'):
        sa = [s.state_dict() for s in full.param_schedulers[name]]
        sb = [s.state_dict() for s in resumed.param_schedulers[name]]
        assert sa == sb and sa[0]['last_step'] == N
    # control: one iteration past the checkpoint is enough to differ
    other = _logged(_train(FMNIST_CFG, str(tmp_path / 'none'),
                           opts + [f'train_cfg.max_iters={K + 1}'],
                           resume=osp.join(work, f'iter_{K}.pth'), control='none'))
    assert other[K + 1]['loss'] != ref[K + 1]['loss']
    # sample grids: iterations 3 and 6, 6 images of 16 px in rows of 4, file and visualizer
    for step in (3, 6):
        grid = np.asarray(Image.open(osp.join(full.work_dir, 'gan_samples',
                                              f'iter_{step}.png')))
        assert grid.shape == (2 * 16 + 3 * 2, 4 * 16 + 5 * 2, 3)
        assert osp.isfile(osp.join(full.log_dir, 'vis_data', 'vis_image',
                                   f'gan_samples_{step}.png'))
    # what transfers: tools/extract_backbone.py gives the encoder's backbone
    from mmssl_ext.cli.extract_backbone import extract_backbone
    out = str(tmp_path / 'backbone.pth')
    extract_backbone(osp.join(full.work_dir, f'iter_{N}.pth'), out)
    saved = torch.load(out, weights_only=True)['state_dict']
    backbone = _model(full).backbone.state_dict()
    assert saved.keys() == backbone.keys()
    assert all(torch.equal(saved[k], backbone[k]) for k in saved)
    # the collapse monitor measured the encoder's mean
    with open(osp.join(full.log_dir, 'vis_data', 'scalars.json')) as f:
        assert 'collapse/effective_rank' in f.read()


# -------------------------------------------------------------------------------- DDP
@HOOKS.register_module(force=True)
class _RecordGANStateHook(Hook):
    """After training, per rank: the model state, both optimisers' and schedules' states, and
    the wrapper types."""
    priority = 'LOWEST'

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def after_train(self, runner):
        model = model_of(runner)
        torch.save(dict(
            state={k: v.detach().clone() for k, v in model.state_dict().items()},
            optim=_optim_states(runner),
            sched={n: [s.state_dict() for s in ss] for n, ss in runner.param_schedulers.items()},
            wrappers={n: type(m).__name__ for n, m in model.named_children()},
            top=type(runner.model).__name__),
            osp.join(self.out_dir, f'rank{get_rank()}.pth'))


def _ddp_worker(rank, port, opts, work, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE='2')
    torch.set_num_threads(1)
    from mmssl_ext.cli import train as train_api
    from mmssl_ext.utils.config import load_config
    args = train_api.parse_args([FMNIST_CFG, '--work-dir', work, '--launcher', 'pytorch',
                                 '--cfg-options', *opts])
    cfg = train_api.merge_args(load_config(args.config), args)
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='_RecordGANStateHook',
                                                      out_dir=out_dir)]
    cfg.experiment_name = f'bigbigan_ddp_{os.getpid()}'
    train_api.build_runner(cfg).train()


def test_ddp_two_ranks_same_state(tiny_tree, tmp_path):
    """4 iterations (2 E+G steps) on 2 gloo ranks, one DDP per network: weights, spectral-norm
    vectors, the D-step counter, both optimisers and both schedules identical on the ranks;
    only BatchNorm running statistics (local batches, ``broadcast_buffers=False``) differ."""
    out = tmp_path / 'records'
    out.mkdir()
    opts = _tiny_opts(tiny_tree, n_img=8, batch=2, max_iters=4)
    mp.spawn(_ddp_worker, args=(free_port(), opts, str(tmp_path / 'work'), str(out)),
             nprocs=2, join=True)
    r0, r1 = (torch.load(out / f'rank{r}.pth', weights_only=False) for r in range(2))
    assert r0['top'] == 'MMSSLSeparateDistributedDataParallel'
    assert {r0['wrappers'][m] for m in EG_MODULES + D_MODULES} == \
        {'MMSSLDistributedDataParallel'}
    diff = _differing(r0['state'], r1['state'])
    assert diff and all(k.endswith(('running_mean', 'running_var')) for k in diff), diff
    assert int(r0['state']['num_d_steps']) == 4
    for name in ('generator', 'discriminator'):
        assert r0['optim'][name].keys() == r1['optim'][name].keys() and r0['optim'][name]
        for pid in r0['optim'][name]:
            assert not _differing(r0['optim'][name][pid], r1['optim'][name][pid])
        assert r0['sched'][name] == r1['sched'][name]
    grids = os.listdir(tmp_path / 'work' / 'gan_samples')
    assert sorted(grids) == ['iter_3.png', 'iter_4.png']
