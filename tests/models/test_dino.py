"""DINO: loss with centring against plain loops, centre update, teacher-temperature warm-up,
EMA-only teacher (tied to real optimizer steps), frozen last layer, multi-crop grouping, the
Fashion-MNIST configs through tools/train.py, exact resume, and the centre / teacher under DDP
(2 gloo ranks)."""
import math
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401  (registration)
from mmssl_ext.cli import train as train_api
from mmssl_ext.models.losses import DINOLoss
from mmssl_ext.registry import MODELS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO, free_port, gloo_group

R18_CFG = osp.join(REPO, 'configs/dino/dino_r18-w32_1xb64-3000it_fmnist.py')
VIT_CFG = osp.join(REPO, 'configs/dino/dino_vit-tiny-p4_1xb64-3000it_fmnist.py')
K = 12  # prototypes of the tiny models
MAX_ITERS = 10


# ----------------------------------------------------------------------------- references
def _reference_loss(student, teacher, center, num_crops, tau_s, tau_t):
    """Plain loops over crop pairs and images, softmax written out with exp / sum."""
    batch = teacher.shape[0] // 2
    s = student.double().view(num_crops, batch, -1)
    t = teacher.double().view(2, batch, -1)
    c = center.double().view(-1)
    total, pairs = 0.0, 0
    for g in range(2):
        for v in range(num_crops):
            if v == g:
                continue
            per_image = []
            for b in range(batch):
                pt = torch.exp((t[g, b] - c) / tau_t)
                pt = pt / pt.sum()
                logits = s[v, b] / tau_s
                log_ps = logits - torch.log(torch.exp(logits).sum())
                per_image.append(-(pt * log_ps).sum())
            total += sum(per_image) / batch
            pairs += 1
    return total / pairs


@pytest.fixture
def max_iters():
    """CosineEMA reads the run length from the MessageHub (the Runner puts it there)."""
    hub = MessageHub.get_current_instance()
    old = hub.runtime_info.get('max_iters', None)
    hub.update_info('max_iters', MAX_ITERS)
    yield MAX_ITERS
    if old is None:
        hub.runtime_info.pop('max_iters', None)
    else:
        hub.update_info('max_iters', old)


def _tiny_cfg(backbone='vit', **kwargs):
    if backbone == 'vit':
        bb = dict(type='VisionTransformer',
                  arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32),
                  img_size=16, patch_size=4, out_type='cls_token',
                  drop_path_rate=kwargs.pop('drop_path_rate', 0.0))
        neck, in_ch = None, 16
    else:
        bb = dict(type='ResNet', depth=18, stem_channels=8, base_channels=8,
                  norm_cfg=dict(type='BN'))
        neck, in_ch = dict(type='GlobalAveragePooling'), 64
    cfg = dict(type='MMSSLDINO', backbone=bb, neck=neck,
               head=dict(type='MMSSLDINOHead', in_channels=in_ch, out_channels=K,
                         hidden_channels=16, bottleneck_channels=8),
               loss=dict(type='MMSSLDINOLoss', out_channels=K, warmup_iters=3),
               data_preprocessor=dict(type='SelfSupDataPreprocessor',
                                      mean=[123.675, 116.28, 103.53],
                                      std=[58.395, 57.12, 57.375], to_rgb=True))
    cfg.update(kwargs)
    return cfg


def _build(backbone='vit', **kwargs):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(_tiny_cfg(backbone, **kwargs))
    model.init_weights()
    return model


def _views(batch=3, num_local=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ([torch.randn(batch, 3, 16, 16, generator=g) for _ in range(2)] +
            [torch.randn(batch, 3, 8, 8, generator=g) for _ in range(num_local)])


def _params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _step(model, optim_wrapper, seed=0):
    loss = model.loss(_views(seed=seed), None)['loss']
    optim_wrapper.update_params(loss)


# ----------------------------------------------------------------------------- DINOLoss
@pytest.mark.parametrize('num_crops', [2, 5])
def test_dino_loss_with_centring_matches_plain_loops(num_crops):
    torch.manual_seed(0)
    batch, k = 3, 7
    loss_fn = DINOLoss(out_channels=k, student_temp=0.1, teacher_temp=0.07,
                       warmup_teacher_temp=0.04, warmup_iters=5)
    loss_fn.center.copy_(torch.randn(1, k))  # a non-zero centre must be subtracted
    center = loss_fn.center.clone()
    student = torch.randn(num_crops * batch, k, requires_grad=True)
    teacher = torch.randn(2 * batch, k)
    got = loss_fn(student, teacher, step=2)
    expected = _reference_loss(student.detach(), teacher, center, num_crops, 0.1, 0.055)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-6)
    # the centre is used before its update, and it matters
    no_centre = _reference_loss(student.detach(), teacher, torch.zeros(k), num_crops, 0.1, 0.055)
    assert not torch.allclose(no_centre, expected, atol=1e-3)
    got.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_center_update_formula_and_no_update_in_eval():
    torch.manual_seed(1)
    loss_fn = DINOLoss(out_channels=5, center_momentum=0.9)
    c0 = torch.randn(1, 5)
    loss_fn.center.copy_(c0)
    teacher = torch.randn(8, 5)
    loss_fn(torch.randn(12, 5), teacher)  # B = 4, 3 crops
    expected = 0.9 * c0 + 0.1 * teacher.mean(dim=0, keepdim=True)
    assert torch.allclose(loss_fn.center, expected, atol=1e-7)
    assert 'center' in loss_fn.state_dict()  # a buffer: saved in checkpoints
    loss_fn.eval()
    before = loss_fn.center.clone()
    loss_fn(torch.randn(12, 5), torch.randn(8, 5))
    assert torch.equal(loss_fn.center, before)


def test_teacher_temperature_warmup():
    loss_fn = DINOLoss(out_channels=3, warmup_teacher_temp=0.04, teacher_temp=0.07,
                       warmup_iters=5)
    got = [loss_fn.teacher_temperature(i) for i in range(8)]
    expected = list(np.linspace(0.04, 0.07, 5)) + [0.07] * 3
    assert np.allclose(got, expected, rtol=0, atol=1e-12)
    assert got[0] == 0.04 and got[4] == 0.07 and got[2] == pytest.approx(0.055)
    assert DINOLoss(out_channels=3, warmup_iters=0).teacher_temperature(0) == 0.07
    assert DINOLoss(out_channels=3, warmup_iters=1).teacher_temperature(0) == 0.04


def test_dino_loss_bad_input_errors():
    with pytest.raises(ValueError, match='out_channels'):
        DINOLoss(out_channels=0)
    with pytest.raises(ValueError, match='student_temp'):
        DINOLoss(out_channels=4, student_temp=0)
    loss_fn = DINOLoss(out_channels=4)
    with pytest.raises(ValueError, match=r'teacher_output must have shape \(N, 4\)'):
        loss_fn(torch.randn(6, 4), torch.randn(4, 5))
    with pytest.raises(ValueError, match='student_output has 7 rows'):
        loss_fn(torch.randn(7, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match='teacher_output has 3 rows'):
        loss_fn(torch.randn(6, 4), torch.randn(3, 4))


# ----------------------------------------------------------------------------- DINO algorithm
def test_teacher_is_updated_only_by_ema_after_each_optimizer_step(max_iters):
    model = _build('resnet')
    teacher_params = list(model.teacher.parameters())
    assert teacher_params and all(not p.requires_grad for p in teacher_params)
    # starts as a copy of the initialised student
    student0 = _params(model._student())
    assert all(torch.equal(student0[n], p) for n, p in model.teacher.module.named_parameters())
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    for k in (1, 2, 3):
        old_teacher = _params(model.teacher.module)
        _step(model, wrapper, seed=k)
        assert model.num_steps == k
        new_student = _params(model._student())
        m = 1 - (1 - 0.996) * (math.cos(math.pi * k / max_iters) + 1) / 2
        for name, p in model.teacher.module.named_parameters():
            assert p.grad is None, f'{name} has a gradient'
            expected = m * old_teacher[name] + (1 - m) * new_student[name]
            assert torch.allclose(p, expected, rtol=1e-6, atol=1e-6), name
        assert not torch.equal(new_student['0.conv1.weight'], old_teacher['0.conv1.weight'])
    # the teacher's buffers (BatchNorm statistics) follow the student's
    assert torch.equal(model.teacher.module[0].bn1.running_mean, model.backbone.bn1.running_mean)


def test_teacher_does_not_move_without_an_optimizer_step(max_iters):
    model = _build('vit')
    before = _params(model.teacher)
    # forward + backward, no step
    model.loss(_views(), None)['loss'].backward()
    assert all(torch.equal(before[n], p) for n, p in model.teacher.named_parameters())
    assert model.num_steps == 0
    model.zero_grad()
    # gradient accumulation: the first update_params skips the step, the second one steps
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2),
                           accumulative_counts=2)
    _step(model, wrapper, seed=1)
    assert all(torch.equal(before[n], p) for n, p in model.teacher.named_parameters())
    assert model.num_steps == 0
    _step(model, wrapper, seed=2)
    assert model.num_steps == 1
    moved = [n for n, p in model.teacher.named_parameters() if not torch.equal(before[n], p)]
    assert moved
    # AMP: GradScaler skips a step with inf gradients -> no teacher update either
    scaler = torch.amp.GradScaler('cpu')
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler.scale(model.loss(_views(seed=3), None)['loss']).backward()
    next(model.head.mlp.parameters()).grad.fill_(float('inf'))
    snap = _params(model.teacher)
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(snap[n], p) for n, p in model.teacher.named_parameters())
    assert model.num_steps == 1
    opt.zero_grad()
    # an optimizer of another module steps: our teacher stays
    other = torch.nn.Linear(3, 3)
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    other(torch.randn(2, 3)).sum().backward()
    snap = _params(model.teacher)
    opt.step()
    assert all(torch.equal(snap[n], p) for n, p in model.teacher.named_parameters())
    assert model.num_steps == 1


def test_last_layer_frozen_for_first_iterations(max_iters):
    model = _build('vit', freeze_last_layer_iters=2)
    last_v = model.head.last_layer.parametrizations.weight.original1
    gains = model.head.last_layer.parametrizations.weight.original0
    assert not gains.requires_grad and torch.equal(gains, torch.ones_like(gains))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(4):
        v0, mlp0 = last_v.detach().clone(), model.head.mlp[0].weight.detach().clone()
        model.loss(_views(seed=step), None)['loss'].backward()
        assert last_v.grad is not None and last_v.grad.abs().sum() > 0
        opt.step()
        frozen = step < 2
        assert (last_v.grad is None) == frozen  # dropped right before the step
        assert torch.equal(last_v, v0) == frozen
        assert not torch.equal(model.head.mlp[0].weight, mlp0)  # the rest trains
        opt.zero_grad()


def test_multi_crop_one_backbone_call_per_resolution():
    model = _build('vit')
    model.eval()  # no BatchNorm here; eval only to make every call deterministic
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    views = _views(batch=2, num_local=3)
    out = model.student_forward(views)
    assert calls == [(4, 3, 16, 16), (6, 3, 8, 8)]
    assert out.shape == (5 * 2, K)
    per_crop = torch.cat([model.head(model.backbone(v)) for v in views])
    assert torch.allclose(out, per_crop, atol=1e-5)  # crop-major order
    calls.clear()
    assert model.teacher_forward(views).shape == (2 * 2, K)
    assert calls == []  # the teacher has its own (EMA) backbone


def test_head_per_crop_size_gives_each_size_its_own_batchnorm_statistics():
    """``head_per_crop_size``: the head is called on the global crops, then on the local ones,
    so its BatchNorm normalises each size with its own statistics; by default it is called once
    on all features, and with a BatchNorm head the two differ."""
    torch.manual_seed(0)
    head = dict(type='MMSSLDINOHead', in_channels=64, out_channels=K, hidden_channels=16,
                bottleneck_channels=8, use_bn=True)
    ours = _build('resnet', head=head)
    per_size = _build('resnet', head=head, head_per_crop_size=True)
    per_size.load_state_dict(ours.state_dict())
    ours.train()
    per_size.train()
    views = _views(batch=4, num_local=3)
    out = per_size.student_forward(views)
    glob, local = torch.cat(views[:2]), torch.cat(views[2:])
    want = torch.cat([per_size.head(per_size.neck(per_size.backbone(glob))[-1]),
                      per_size.head(per_size.neck(per_size.backbone(local))[-1])])
    torch.testing.assert_close(out, want)
    joint = ours.student_forward(views)
    assert joint.shape == out.shape == ((2 + 3) * 4, K)
    assert (joint - out).abs().max() > 1e-3  # the batch statistics differ
    feats = torch.cat([ours.neck(ours.backbone(x))[-1] for x in (glob, local)])
    torch.testing.assert_close(joint, ours.head(feats))


def test_teacher_has_no_stochastic_depth():
    model = _build('vit', drop_path_rate=0.2)
    student = [m.drop_prob for m in model.backbone.modules() if hasattr(m, 'drop_prob')]
    teacher = [m.drop_prob for m in model.teacher.modules() if hasattr(m, 'drop_prob')]
    assert max(student) > 0 and teacher and max(teacher) == 0


def test_dino_bad_input_errors():
    model = _build('vit')
    with pytest.raises(ValueError, match='list of crops'):
        model.loss(torch.randn(2, 3, 16, 16), None)
    with pytest.raises(ValueError, match='global crops must share one size'):
        model.loss([torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8)], None)
    with pytest.raises(ValueError, match='base_momentum'):
        _build('vit', base_momentum=1.0)
    bad = _tiny_cfg('vit')
    bad['loss']['out_channels'] = K + 1
    with pytest.raises(ValueError, match='differs from head.out_channels'):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            MODELS.build(bad)


def test_update_without_run_length_is_a_clear_error():
    model = _build('vit')
    hub = MessageHub.get_current_instance()
    old = hub.runtime_info.pop('max_iters', None)
    try:
        with pytest.raises(RuntimeError, match='max_iters'):
            model.update_teacher()
    finally:
        if old is not None:
            hub.update_info('max_iters', old)


# ----------------------------------------------------------------------------- configs
def _tiny_opts(tree, iters):
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            f'train_cfg.max_iters={iters}', f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.logger.interval=1', 'model.freeze_last_layer_iters=1']


@pytest.mark.parametrize('config', [R18_CFG, VIT_CFG], ids=['resnet', 'vit'])
def test_fmnist_config_trains_through_tools_train(config, tiny_tree, tmp_path):
    work = str(tmp_path / 'work')
    runner = train_api.main([config, '--work-dir', work, '--cfg-options',
                             *_tiny_opts(tiny_tree, 3)])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 3 and np.isfinite(losses).all()
    model = runner.model
    assert model.num_steps == 3
    ckpt = torch.load(f'{work}/iter_3.pth', map_location='cpu', weights_only=False)
    sd = ckpt['state_dict']
    assert int(sd['teacher.steps']) == 4 and sd['dino_loss.center'].abs().sum() > 0
    # the teacher moved towards the student but is not the student
    name = next(n for n in sd if n.startswith('backbone.') and sd[n].is_floating_point())
    teacher_name = 'teacher.module.0.' + name[len('backbone.'):]
    assert not torch.equal(sd[name], sd[teacher_name])


@pytest.mark.parametrize('config,controls', [
    (R18_CFG, ('before_advance', )),  # nothing random in the model: mmengine alone replays it
    (VIT_CFG, ('none', 'before_advance')),  # stochastic depth draws from torch's generator
], ids=['resnet', 'vit'])
def test_dino_exact_resume(config, controls, tiny_tree, tmp_path):
    """Teacher (parameters + update count), centre, frozen-last-layer window and temperature
    warm-up straddle the interruption (freeze 4 steps, warm-up 5, interrupted after 3)."""
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=12', 'model.freeze_last_layer_iters=4',
            'model.loss.warmup_iters=5', *_COMMON]
    head = 'teacher.module.2' if config == R18_CFG else 'teacher.module.1'
    _check_exact_resume(config, opts, tmp_path,
                        buffers=['teacher.steps', 'dino_loss.center',
                                 f'{head}.last_layer.parametrizations.weight.original1'],
                        controls=controls)


# ----------------------------------------------------------------------------- DDP
WORLD_SIZE = 2


def _rank_teacher_output(rank):
    g = torch.Generator().manual_seed(100 + rank)
    batch = 2 if rank == 0 else 3  # unequal batches: the centre is still the mean of all rows
    return torch.randn(2 * batch, 6, generator=g), torch.randn(4 * batch, 6, generator=g)


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, port, WORLD_SIZE):
        from mmssl_ext.engine.dist import MMSSLDistributedDataParallel
        loss_fn = DINOLoss(out_channels=6)
        loss_fn.center.fill_(0.5)
        teacher, student = _rank_teacher_output(rank)
        loss_fn(student, teacher)
        # a whole DINO step through mmengine's DDP wrapper (which bypasses model.train_step)
        MessageHub.get_current_instance().update_info('max_iters', MAX_ITERS)
        torch.manual_seed(0)
        model = _build('vit')
        ddp = MMSSLDistributedDataParallel(module=model)
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5))
        g = torch.Generator().manual_seed(rank)
        for _ in range(2):
            inputs = ([torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
                       for _ in range(2)] +
                      [torch.randint(0, 256, (2, 3, 8, 8), generator=g, dtype=torch.uint8)
                       for _ in range(2)])
            ddp.train_step(dict(inputs=inputs, data_samples=[DataSample()] * 2), wrapper)
        torch.save(dict(center=loss_fn.center.clone(), steps=model.num_steps,
                        teacher=_params(model.teacher.module),
                        student=_params(model._student()),
                        model_center=model.dino_loss.center.clone()),
                   os.path.join(out_dir, f'rank{rank}.pth'))


def test_ddp_center_all_reduce_and_teacher_update(tmp_path):
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth', weights_only=True)
              for r in range(WORLD_SIZE))
    # centre: identical on both ranks, the mean over both ranks' teacher rows
    assert torch.equal(r0['center'], r1['center'])
    rows = torch.cat([_rank_teacher_output(r)[0] for r in range(WORLD_SIZE)])
    expected = 0.9 * 0.5 + 0.1 * rows.mean(dim=0, keepdim=True)
    assert torch.allclose(r0['center'], expected, atol=1e-6)
    own = 0.9 * 0.5 + 0.1 * _rank_teacher_output(0)[0].mean(dim=0, keepdim=True)
    assert not torch.allclose(r0['center'], own, atol=1e-3)  # not just the rank's own rows
    # DINO under DDP: the teacher took one EMA step per optimizer step on each rank, in sync
    assert r0['steps'] == r1['steps'] == 2
    assert torch.allclose(r0['model_center'], r1['model_center'], atol=1e-6)
    for name in r0['teacher']:
        assert torch.allclose(r0['teacher'][name], r1['teacher'][name], atol=1e-6), name
        assert torch.allclose(r0['student'][name], r1['student'][name], atol=1e-6), name
    assert any(not torch.equal(r0['teacher'][n], r0['student'][n]) for n in r0['teacher'])
