"""CollapseMonitorHook: the measures against closed forms, the stop path, neutrality to the run,
and the hook under mmpretrain's own train script via the runtime base."""
import glob
import json
import math
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from scipy.linalg import hadamard

from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.hooks import CollapseError, CollapseMonitorHook
from mmssl_ext.engine.hooks.collapse_monitor import (collapse_measures, effective_rank,
                                                     embedding_std, mean_entropy, mean_kl)
from mmssl_ext.engine.hooks.rng_state import get_rng_state
from mmssl_ext.registry import MODELS
from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from tests.helpers import REPO


def _np_erank(singular_values):
    p = np.asarray(singular_values, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


# ------------------------------------------------------------------------------ measures


def test_identical_rows_have_zero_std_and_rank_one():
    emb = torch.tensor([[3.0, -1.0, 2.0, 0.5]]).repeat(10, 1)
    m = collapse_measures(emb)
    assert m['embedding_std'] == pytest.approx(0.0, abs=1e-12)
    assert m['embedding_std_ratio'] == pytest.approx(0.0, abs=1e-12)
    assert m['effective_rank'] == pytest.approx(1.0, abs=1e-9)
    assert effective_rank(torch.zeros(5, 3)) == 0.0


@pytest.mark.parametrize('a,b', [(10.0, 1.0), (1.0, 1.0), (100.0, 0.1)])
def test_one_dominant_dimension_against_its_closed_form(a, b):
    """Rows ``(a, b s_i)`` with ``s`` the columns 1..d-1 of a Hadamard matrix: orthogonal,
    balanced +-1 columns, so every row has norm ``r = sqrt(a^2 + (d-1) b^2)``; after the L2
    normalisation dimension 0 is constant (std 0) and the others are +-b/r in equal numbers
    (std b/r); the singular values are a sqrt(N) and (d-1) times b sqrt(N)."""
    n, d = 64, 8
    h = hadamard(n).astype(np.float64)
    emb = np.concatenate([a * h[:, :1], b * h[:, 1:d]], axis=1)
    r = math.sqrt(a * a + (d - 1) * b * b)
    assert embedding_std(torch.from_numpy(emb)) == pytest.approx((d - 1) / d * b / r, rel=1e-9)
    expected = _np_erank([a / r] + [b / r] * (d - 1))  # the scale cancels in p_k
    assert effective_rank(torch.from_numpy(emb)) == pytest.approx(expected, rel=1e-9)
    if a == b:
        assert expected == pytest.approx(d)


def test_isotropic_gaussian_spreads_over_the_sphere():
    """Normalised isotropic Gaussian rows are uniform on the sphere: E z_j^2 = 1/d, so the std
    per dimension is ~ 1/sqrt(d); with N >> d the singular values are nearly equal: rank ~ d."""
    d, n = 16, 4000
    emb = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m = collapse_measures(emb)
    assert m['embedding_std'] == pytest.approx(1 / math.sqrt(d), rel=0.03)
    assert m['embedding_std_ratio'] == pytest.approx(1.0, rel=0.03)
    assert d * 0.97 < m['effective_rank'] <= d
    # and the same rank from numpy's singular values
    z = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    assert m['effective_rank'] == pytest.approx(_np_erank(np.linalg.svd(z, compute_uv=False)),
                                                rel=1e-9)


def test_entropy_and_kl_against_loops():
    k = 5
    uniform = torch.full((3, k), 1.0 / k)
    one_hot = torch.eye(k)[:3]
    assert mean_entropy(uniform) == pytest.approx(math.log(k))
    assert mean_entropy(one_hot) == pytest.approx(0.0, abs=1e-12)
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(4, k, generator=g), 1)
    q = torch.softmax(torch.randn(4, k, generator=g), 1)
    kl = np.mean([sum(p[i, j] * math.log(p[i, j] / q[i, j]) for j in range(k))
                  for i in range(4)])
    assert mean_kl(p, q) == pytest.approx(float(kl), rel=1e-6)
    m = collapse_measures(torch.randn(4, 3, generator=g), probs=q, teacher_probs=p)
    assert m['kl'] == pytest.approx(float(kl), rel=1e-6)
    assert m['teacher_entropy'] == pytest.approx(mean_entropy(p))
    assert m['marginal_entropy'] == pytest.approx(mean_entropy(q.mean(0, keepdim=True)))
    # DINO's collapse modes: both KL 0; uniform -> ln K, one-dimension -> 0
    assert collapse_measures(torch.randn(3, 3), uniform, uniform)['teacher_entropy'] == \
        pytest.approx(math.log(k))
    assert collapse_measures(torch.randn(3, 3), one_hot, one_hot)['kl'] == \
        pytest.approx(0.0, abs=1e-9)


def test_bad_arguments_are_named():
    with pytest.raises(KeyError, match=r"unknown measure\(s\) \['rank'\] in stop_below"):
        CollapseMonitorHook(stop_below=dict(rank=1.0))
    with pytest.raises(ValueError, match='interval must be an int >= 1, got 0'):
        CollapseMonitorHook(interval=0)


# ------------------------------------------------------------------------------ in a run


@MODELS.register_module(force=True)
class _ToyEmbedder(BaseModel):
    """A linear map of the pixels; ``constant``: zero weights that never train (output = bias,
    the same for every image)."""

    def __init__(self, constant=False, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
        if constant:
            nn.init.zeros_(self.backbone[1].weight)
            self.backbone[1].weight.requires_grad_(False)
        self.dropout = nn.Dropout(0.5)  # eval mode must switch it off during a check

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = self.dropout(self.backbone(inputs))
        return dict(loss=(x - 1).pow(2).mean()) if mode == 'loss' else x


def _cfg_dict(tree, constant, max_iters=8):
    return dict(
        default_scope='mmpretrain',
        model=dict(type='_ToyEmbedder', constant=constant,
                   data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3,
                                          std=[127.5] * 3)),
        train_dataloader=dict(
            batch_size=4, num_workers=0, persistent_workers=False,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(type='CustomDataset', data_root=tree, ann_file='meta/train.txt',
                         data_prefix='train',
                         pipeline=[dict(type='LoadImageFromFile'),
                                   dict(type='RandomResizedCrop', scale=8),
                                   dict(type='PackInputs')])),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=False), randomness=dict(seed=0))


def _write_cfg(tmp_path, tree, constant, hook, max_iters=8):
    cfg = Config(dict(_cfg_dict(tree, constant, max_iters),
                      custom_hooks=[dict(type='CollapseMonitorHook', **hook)]))
    path = str(tmp_path / f'toy_{constant}.py')
    cfg.dump(path)
    return path


def _collapse_rows(work):
    [log] = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    with open(log) as f:
        rows = [json.loads(line) for line in f]
    return {r['step']: r for r in rows if 'collapse/effective_rank' in r}


def test_a_constant_model_stops_with_the_message_and_the_checkpoint_intact(tiny_tree, tmp_path):
    """Checks at 0, 2, 4, ...: rank 1 from the start, so with patience 2 the run stops after
    iteration 2, whose checkpoint is written first; nothing of iteration 3 on."""
    work = str(tmp_path / 'work')
    hook = dict(interval=2, stop_below=dict(effective_rank=1.5), patience=2)
    with pytest.raises(CollapseError) as e:
        train_api.main([_write_cfg(tmp_path, tiny_tree, True, hook), '--work-dir', work])
    msg = str(e.value)
    assert 'collapse at iteration 2 ' in msg and 'effective_rank = 1 < 1.5' in msg
    assert 'iterations [0, 2]' in msg
    assert f'the last checkpoint, {osp.join(work, "iter_2.pth")}, is intact' in msg
    ckpt = load_checkpoint_safe(osp.join(work, 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2 and ckpt['collapse_monitor']['streak'] == {
        'effective_rank < 1.5': 2}
    assert not osp.exists(osp.join(work, 'iter_4.pth'))
    rows = _collapse_rows(work)
    assert sorted(rows) == [0, 2] and rows[2]['collapse/embedding_std'] == 0.0


def test_a_healthy_model_runs_on_and_the_checks_are_neutral(tiny_tree, tmp_path):
    """Same thresholds, a real linear map: no stop; checks every iteration leave the losses and
    weights bit-identical to a run with the monitor at an interval past the end."""
    hook = dict(interval=1, stop_below=dict(effective_rank=1.5), patience=2)
    runs = {}
    for name, h in (('every', hook), ('never', dict(interval=1000))):
        work = str(tmp_path / name)
        args = train_api.parse_args([_write_cfg(tmp_path, tiny_tree, False, h),
                                     '--work-dir', work])
        cfg = train_api.merge_args(Config.fromfile(args.config), args)
        cfg.experiment_name = f'neutral_{name}'
        runner = train_api.build_runner(cfg)
        runner.train()
        runs[name] = runner
    every = _collapse_rows(str(tmp_path / 'every'))
    assert sorted(every) == list(range(9))
    assert all(r['collapse/effective_rank'] > 1.5 for r in every.values())
    assert sorted(_collapse_rows(str(tmp_path / 'never'))) == [0]
    a, b = (r.model.state_dict() for r in runs.values())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs['every'].model.training


def test_a_check_restores_the_generators_and_the_mode(tiny_tree, tmp_path):
    args = train_api.parse_args([_write_cfg(tmp_path, tiny_tree, False, dict(interval=1)),
                                 '--work-dir', str(tmp_path / 'w')])
    cfg = train_api.merge_args(Config.fromfile(args.config), args)
    cfg.train_cfg.max_iters = 0
    runner = train_api.build_runner(cfg)
    runner.train()
    [hook] = [h for h in runner.hooks if isinstance(h, CollapseMonitorHook)]
    before = get_rng_state()
    first = hook.measure(runner)
    after = get_rng_state()
    assert torch.equal(before['torch'], after['torch'])
    assert torch.equal(before['numpy']['state'], after['numpy']['state'])
    assert before['python']['state'].equal(after['python']['state'])
    assert runner.model.training
    assert hook.measure(runner) == first  # eval mode: dropout off, the same probe set


@pytest.mark.slow
def test_the_runtime_base_adds_the_monitor_under_mmpretrains_train_script(
        tiny_tree, tmp_path, monkeypatch):
    """A config that lists no monitor but inherits configs/_base_/default_runtime.py gets it
    from the base under mmpretrain's own tools/train.py: its check before the first iteration
    is in the visualizer's log."""
    from tests.engine.test_runtime import _mmpretrain_train
    path = tmp_path / 'toy_runtime.py'
    body = _cfg_dict(str(tiny_tree), False, max_iters=4)
    path.write_text(f"_base_ = [{osp.join(REPO, 'configs/_base_/default_runtime.py')!r}]\n" +
                    ''.join(f'{k} = {v!r}\n' for k, v in body.items()))
    work = str(tmp_path / 'work')
    _mmpretrain_train([str(path), '--work-dir', work], monkeypatch)
    rows = _collapse_rows(work)
    assert sorted(rows) == [0]  # default interval 100 > the 4 iterations
    assert 1.0 < rows[0]['collapse/effective_rank'] <= 16
    assert 0 < rows[0]['collapse/embedding_std'] < 1


def test_resume_with_checks_every_iteration_is_exact(tiny_tree, tmp_path):
    """Interrupted after iteration 4 and resumed (the probe set drawn anew, the streak from the
    checkpoint) vs uninterrupted: the same losses, weights and monitor values, bitwise (the toy
    model's dropout makes training depend on the generators)."""
    import tests.cli.test_exact_resume  # noqa: F401  registers _InterruptAfterHook
    hook = dict(interval=1, stop_below=dict(effective_rank=1.5), patience=3)

    def run(work, extra_hooks=(), resume=False, name=''):
        args = train_api.parse_args([_write_cfg(tmp_path, tiny_tree, False, hook),
                                     '--work-dir', work] + (['--resume'] if resume else []))
        cfg = train_api.merge_args(Config.fromfile(args.config), args)
        cfg.custom_hooks = list(cfg.custom_hooks) + list(extra_hooks)
        cfg.log_processor = dict(by_epoch=False, window_size=1)
        cfg.experiment_name = f'resume_{name}'
        runner = train_api.build_runner(cfg)
        runner.train()
        return runner

    full = run(str(tmp_path / 'full'), name='full')
    cut = str(tmp_path / 'cut')
    run(cut, [dict(type='_InterruptAfterHook', iters=4)], name='cut')
    resumed = run(cut, resume=True, name='resumed')
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def rows(runner):
        with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
            return [json.loads(line) for line in f]

    def by_step(rows_, key):
        return {r['step']: r[key] for r in rows_ if key in r}

    for key in ('loss', 'collapse/effective_rank', 'collapse/embedding_std'):
        ref, got = by_step(rows(full), key), by_step(rows(resumed), key)
        got = {i: v for i, v in got.items() if i > 4}  # (a log dir shared with the cut run)
        assert sorted(got) == [5, 6, 7, 8] and all(got[i] == ref[i] for i in got), key


def _monitor_runner(perturb: bool):
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from tests.engine.test_online_probe import _Flatten, _ToyVectors
    model = _Flatten()
    model.backbone = nn.Sequential(nn.Flatten(), nn.Linear(48, 8))
    with torch.no_grad():
        torch.manual_seed(0)
        for p in model.parameters():
            p.copy_(torch.randn_like(p) + (3.0 if perturb else 0.0))
    loader = DataLoader(_ToyVectors(n=20), batch_size=4, collate_fn=pseudo_collate)
    return SimpleNamespace(model=model, train_loop=SimpleNamespace(dataloader=loader))


def _monitor_ddp_worker(rank, port, out):
    from tests.helpers import gloo_group
    with gloo_group(rank, port, 2):
        torch.save(CollapseMonitorHook().measure(_monitor_runner(perturb=rank == 1)),
                   f'{out}.{rank}')


def test_two_gloo_ranks_log_rank_zeros_measures(tmp_path):
    """Rank 1's replica is made different on purpose: both ranks still return rank 0's numbers
    (one computation, broadcast), so they log and stop alike."""
    import torch.multiprocessing as mp

    from tests.helpers import free_port
    out = str(tmp_path / 'm')
    mp.start_processes(_monitor_ddp_worker, args=(free_port(), out), nprocs=2,
                       start_method='fork')
    ref = CollapseMonitorHook().measure(_monitor_runner(perturb=False))
    other = CollapseMonitorHook().measure(_monitor_runner(perturb=True))
    assert ref != other
    assert torch.load(f'{out}.0') == ref and torch.load(f'{out}.1') == ref


def test_dino_outputs_give_its_loss_as_teacher_entropy_plus_kl():
    """With both global crops equal, DINO's loss is the cross-entropy H(t, s) = H(t) + KL(t||s)
    of one crop: the monitor's teacher entropy plus its KL (centre set non-zero, eval mode)."""
    from tests.models.test_dino import _build
    model = _build('vit').eval()
    torch.manual_seed(0)
    model.dino_loss.center.copy_(torch.randn_like(model.dino_loss.center))
    x = torch.randn(5, 3, 16, 16)
    out = model.collapse_outputs([x, x])
    assert out['embedding'].shape == (5, 16) and out['probs'].shape == out['teacher_probs'].shape
    m = collapse_measures(**out)
    with torch.no_grad():
        loss = model.dino_loss(model.student_forward([x, x]), model.teacher_forward([x, x]),
                               step=0)
    assert m['teacher_entropy'] + m['kl'] == pytest.approx(float(loss), rel=1e-5)
