"""benchmarks.variants: each variant changes exactly the part of our config it names, and the
lightly views come out as what our PackInputs / data preprocessor take."""
import os.path as osp

import numpy as np
import pytest

from benchmarks import quality, variants
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

BYOL = osp.join(REPO, quality.METHODS['byol'])


def _views(cfg):
    pipe = cfg.train_dataloader.dataset.pipeline
    return [t for t in pipe if t['type'] == 'MultiView'][0]['transforms']


def test_bilinear_changes_only_the_crops_interpolation():
    cfg, ref = load_config(BYOL), load_config(BYOL)
    assert any(t.get('interpolation') != 'bilinear'
               for v in _views(ref) for t in v if t['type'] == 'RandomResizedCrop')
    msg = variants.apply_variant(cfg, 'byol', 'bilinear')
    assert msg == '2 RandomResizedCrop -> bilinear'
    for got, want in zip(_views(cfg), _views(ref)):
        for a, b in zip(got, want):
            if a['type'] == 'RandomResizedCrop':
                assert a['interpolation'] == 'bilinear'
                a = {k: v for k, v in a.items() if k != 'interpolation'}
                b = {k: v for k, v in b.items() if k != 'interpolation'}
            assert a == b
    assert cfg.model == ref.model


def test_last_bias_builds_a_biased_last_layer():
    from mmengine.registry import DefaultScope
    from mmssl_ext.registry import MODELS
    cfg = load_config(BYOL)
    variants.apply_variant(cfg, 'byol', 'last-bias')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        neck = MODELS.build(cfg.model.neck)
        ref = MODELS.build(load_config(BYOL).model.neck)
    last = [m for m in neck.modules() if m.__class__.__name__ == 'Linear'][-1]
    ref_last = [m for m in ref.modules() if m.__class__.__name__ == 'Linear'][-1]
    assert last.bias is not None and ref_last.bias is None
    assert cfg.model.head.predictor.with_last_bias is True


def test_bad_variants_name_the_problem():
    cfg = load_config(BYOL)
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        variants.apply_variant(cfg, 'byol', 'nope')
    cfg.optim_wrapper.optimizer.type = 'SGD'
    pytest.importorskip('lightly')
    with pytest.raises(ValueError, match='the optimizer is SGD, not LARS'):
        variants.apply_variant(cfg, 'byol', 'lightly-lars')


def test_lightly_views_feed_our_preprocessor():
    pytest.importorskip('lightly')
    from mmpretrain.registry import TRANSFORMS
    cfg = load_config(BYOL)
    variants.apply_variant(cfg, 'byol', 'lightly-views')
    pipe = cfg.train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipe] == ['LoadImageFromFile', 'LightlyViews', 'PackInputs']
    yy, xx = np.mgrid[0:28, 0:28]
    # a 2 px checkerboard: every crop the views can take holds both levels
    img = np.repeat((((yy // 2 + xx // 2) % 2) * 200).astype(np.uint8)[..., None], 3, axis=2)
    out = TRANSFORMS.build(dict(type='LightlyViews'))(dict(img=img))['img']
    assert len(out) == 2
    for v in out:
        assert v.shape == (32, 32, 3) and v.dtype == np.float32
        assert 0.0 <= v.min() and v.max() <= 255.0 + 1e-3  # 0-255, not normalised
        assert v.max() - v.min() > 20


def test_lightly_loop_combines_with_model_changes_only(capsys):
    with pytest.raises(SystemExit):
        variants.main(['--method', 'byol', '--variant', 'lightly-loop', 'lightly-lars'])
    assert ("lightly-loop combines with ['head-per-size', 'last-bias'] only, "
            "not ['lightly-lars']") in capsys.readouterr().err


def _loop_peer(cfg=None):
    from benchmarks import peers
    cfg = cfg or peers.method_cfg('byol', dict(quality.PRESETS['cpu']))
    return variants.ours_in_lightly_loop('byol')(cfg)


def test_lightly_loop_trains_what_the_runner_would_and_counts_the_backbone():
    from benchmarks import peers
    torch = pytest.importorskip('torch')
    peer = _loop_peer()
    trained = {id(p) for m in peer.trained_modules() for p in m.parameters()}
    wanted = {id(p) for p in peer.model.parameters() if p.requires_grad}
    target = {id(p) for p in peer.model.target_net.parameters()}
    assert trained == wanted and not trained & target
    assert peer.backbone.net is peer.model.backbone  # what is evaluated is what is trained
    # two 32 px views per sample through the online backbone (the target copy is not counted)
    data = [([torch.rand(3, 32, 32), torch.rand(3, 32, 32)], 0) for _ in range(4)]
    assert peers.images_per_sample('byol', peer.cfg, data,
                                   peer_cls=type(peer)) == pytest.approx(2.0)


def test_lightly_loop_target_follows_the_cosine_momentum_of_the_run_length():
    """The loop gives mmpretrain's CosineEMA the run's length, as the Runner's RuntimeInfoHook
    does: the second update moves the target by m = base * (cos(pi / iters) + 1) / 2."""
    import math

    import torch
    torch.manual_seed(0)
    peer = _loop_peer()
    peer.train()
    iters, base = 7, peer.cfg.model.base_momentum
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    opt = torch.optim.SGD([p for m in peer.trained_modules() for p in m.parameters()], lr=0.5)
    loss = peer.loss(views, 0, iters)  # first update: the target copies the online weights
    assert loss.dim() == 0 and -4.0 <= loss.item() <= 4.0
    name, online = next((n, p) for n, p in peer.model.backbone.named_parameters()
                        if n.endswith('conv1.weight'))
    target = dict(peer.model.target_net.module.named_parameters())['0.' + name]
    assert torch.equal(target, online)
    opt.zero_grad()
    loss.backward()
    opt.step()
    before, new = target.detach().clone(), online.detach().clone()
    assert not torch.equal(before, new)
    peer.loss(views, 1, iters)
    m = base * (math.cos(math.pi / iters) + 1) / 2
    torch.testing.assert_close(target.detach(), (1 - m) * before + m * new)


def _compare_grads(pairs, skip=lambda name, mod_l: False):
    """Asserts that each (lightly module, our module) pair has the same gradient in every
    parameter of lightly's that ``skip`` does not exclude; returns how many were compared."""
    checked = 0
    for mod_l, mod_o in pairs:
        params_o = dict(mod_o.named_parameters())
        for name, p_l in mod_l.named_parameters():
            if skip(name, mod_l):
                continue
            p_o = params_o[name]
            assert p_l.shape == p_o.shape, name
            # relative to the gradient's norm: float sums differ element-wise in order only
            assert (p_o.grad - p_l.grad).norm() <= 1e-3 * p_l.grad.norm(), name
            checked += 1
    return checked


def test_lightly_loop_model_computes_lightlys_byol_step():
    """Given the same weights and views, our BYOL (mmpretrain's model, as lightly-loop runs it)
    and the lightly peer give the same loss and the same gradients at the first step: the peer
    comparison trains one algorithm, not two.  The structural differences are made neutral: our
    projector / predictor's first layer has a bias (followed by BN: no effect), lightly's last
    layer has one (set to 0 here)."""
    pytest.importorskip('lightly')
    from benchmarks import peers
    import torch
    torch.manual_seed(0)
    ours = _loop_peer()
    cfg = ours.cfg
    lightly = peers.PEERS['byol'](cfg)
    model = ours.model
    lightly.backbone.net.load_state_dict(model.backbone.state_dict())
    pairs = [(lightly.backbone.net, model.backbone)]
    with torch.no_grad():
        for head, neck in ((lightly.projection, model.neck),
                           (lightly.prediction, model.head.predictor)):
            head.layers[0].weight.copy_(neck.fc0.weight)
            head.layers[1].load_state_dict(neck.bn0.state_dict())
            head.layers[3].weight.copy_(neck.fc1.weight)
            head.layers[3].bias.zero_()
            pairs += [(head.layers[0], neck.fc0), (head.layers[1], neck.bn0),
                      (head.layers[3], neck.fc1)]
    lightly.backbone_target.load_state_dict(lightly.backbone.state_dict())
    lightly.projection_target.load_state_dict(lightly.projection.state_dict())
    lightly.train()
    ours.train()
    gen = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 3, 32, 32, generator=gen) for _ in range(2)]
    got, want = ours.loss(views, 0, 10), lightly.loss(views, 0, 10)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    got.backward()
    want.backward()
    # lightly's last-layer bias: ours has none
    checked = _compare_grads(pairs, skip=lambda name, mod_l: name == 'bias' and isinstance(
        mod_l, torch.nn.Linear))
    assert checked > 60  # every backbone and head weight was compared


def _dino_pair(use_bn: bool, variant=()):
    """Our DINO (as lightly-loop runs it, after ``variant``) and the lightly peer, with the same
    weights: lightly's head gets ours (its hidden layers have no bias where BN follows; ours has
    one, zero at init and cancelled by the BN), both teachers start as copies of the students."""
    from benchmarks import peers
    import torch
    cfg = peers.method_cfg('dino', dict(quality.PRESETS['cpu']))
    cfg.model.head.use_bn = use_bn
    for v in variant:
        variants.apply_variant(cfg, 'dino', v)
    torch.manual_seed(0)
    ours = variants.ours_in_lightly_loop('dino')(cfg)
    lightly = peers.PEERS['dino'](cfg)
    model = ours.model
    lightly.backbone.net.load_state_dict(model.backbone.state_dict())
    pairs = [(lightly.backbone.net, model.backbone)]
    assert len(lightly.head.layers) == len(model.head.mlp)
    with torch.no_grad():
        for mod_l, mod_o in zip(lightly.head.layers, model.head.mlp):
            assert type(mod_l) is type(mod_o)
            if isinstance(mod_o, torch.nn.Linear):
                mod_l.weight.copy_(mod_o.weight)
                if mod_l.bias is not None:
                    mod_l.bias.copy_(mod_o.bias)
                else:
                    assert use_bn and not mod_o.bias.any()
            elif isinstance(mod_o, torch.nn.BatchNorm1d):
                mod_l.load_state_dict(mod_o.state_dict())
            pairs.append((mod_l, mod_o))
        wn = model.head.last_layer.parametrizations.weight
        lightly.head.last_layer.weight_g.copy_(wn.original0)
        lightly.head.last_layer.weight_v.copy_(wn.original1)
    lightly.backbone_teacher.load_state_dict(lightly.backbone.state_dict())
    lightly.head_teacher.load_state_dict(lightly.head.state_dict())
    lightly.train()
    ours.train()
    return ours, lightly, pairs


def _dino_step(ours, lightly):
    import torch
    gen = torch.Generator().manual_seed(1)
    views = [torch.randn(6, 3, 32, 32, generator=gen) for _ in range(2)] + \
        [torch.randn(6, 3, 16, 16, generator=gen) for _ in range(6)]
    return ours.loss(views, 0, 10), lightly.loss(views, 0, 10)


def _assert_same_grads(ours, lightly, pairs):
    checked = _compare_grads(pairs)
    wn = ours.model.head.last_layer.parametrizations.weight
    g_l = lightly.head.last_layer.weight_v.grad
    assert (wn.original1.grad - g_l).norm() <= 1e-3 * g_l.norm()
    assert wn.original0.grad is None and lightly.head.last_layer.weight_g.grad is None
    assert checked > 60  # every backbone and head weight was compared


@pytest.mark.parametrize('use_bn', [False, True])
def test_dino_head_per_size_computes_lightlys_dino_step(use_bn):
    """Given the same weights and crops, our DINO with the head run once per crop size
    (``--variant head-per-size``) and lightly's DINO give the same first-step loss and gradients;
    without BatchNorm in the head, so does our DINO itself (the head's batching is then
    irrelevant)."""
    pytest.importorskip('lightly')
    import torch
    for variant in ([(), ('head-per-size',)] if not use_bn else [('head-per-size',)]):
        ours, lightly, pairs = _dino_pair(use_bn, variant)
        got, want = _dino_step(ours, lightly)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        got.backward()
        want.backward()
        _assert_same_grads(ours, lightly, pairs)


def test_dino_with_a_bn_head_differs_from_lightly_only_by_the_heads_batching():
    """With the config's BatchNorm head our DINO (the head once on all crops, as the official
    code) computes a different step than lightly's; the variant that changes only the head's
    batching closes the difference (previous test)."""
    pytest.importorskip('lightly')
    ours, lightly, _ = _dino_pair(True)
    got, want = _dino_step(ours, lightly)
    assert abs(float(got) - float(want)) > 1e-3


def test_lightly_loop_dino_steps_its_teacher_and_freeze_on_the_loops_optimizer():
    """Our DINO's teacher update and last-layer freeze hang on torch's optimizer step hooks, so
    they act in lightly's loop too: one step of the loop's own optimizer moves the teacher once
    and leaves the frozen last layer as it was."""
    pytest.importorskip('lightly')  # the loop's weight-decay groups are lightly's
    from benchmarks import peers
    import torch
    torch.manual_seed(0)
    peer = variants.ours_in_lightly_loop('dino')(
        peers.method_cfg('dino', dict(quality.PRESETS['cpu'])))
    peer.train()
    opt = peer.optimizer()
    model = peer.model
    assert model.freeze_last_layer_iters > 1
    steps = int(model.teacher.steps)
    last = model.head.last_layer.parametrizations.weight.original1
    before_last = last.detach().clone()
    teacher = next(model.teacher.module.parameters())
    before_teacher = teacher.detach().clone()
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)] + \
        [torch.randn(4, 3, 16, 16) for _ in range(6)]
    loss = peer.loss(views, 0, 10)
    opt.zero_grad()
    loss.backward()
    assert last.grad is not None
    peer.before_optimizer_step(0)
    opt.step()
    assert int(model.teacher.steps) == steps + 1
    assert not torch.equal(teacher, before_teacher)
    assert torch.equal(last, before_last)
