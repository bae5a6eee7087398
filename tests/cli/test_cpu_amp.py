"""``tools/train.py --amp`` on the CPU (bfloat16 autocast) and the ``channels_last`` config key.

The bfloat16 path is forced on (``cpu_bf16_support`` patched to True) so that the tests run the
same on any processor: autocast in bfloat16 works everywhere on the CPU, emulated where the
processor lacks native support (where ``--amp`` itself falls back to float32: tested too).
"""
import copy
import logging
import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger

from mmssl_ext.cli import train as train_api
from mmssl_ext.cli.knn_eval import build_model, load_backbone_weights
from mmssl_ext.engine import runner as runner_mod
from mmssl_ext.engine.cpu_amp import CPUAmpOptimWrapper, channels_last_tensors
from mmssl_ext.engine.hooks import NonFiniteLossError
from mmssl_ext.utils.config import load_config
from tests.cli import test_exact_resume as exact
from tests.engine.test_nan_check_hook import _write_cfg
from tests.helpers import REPO

MAIN_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-cifar-w32_1xb64-2400it_fmnist.py')


def _tiny_pirl(tree, work, iters=2):
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=8', 'model.memory_bank.length=8',
            'model.memory_bank.num_negatives=4', f'train_cfg.max_iters={iters}',
            f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
            'model.backbone.stem_channels=8', 'model.backbone.base_channels=8',
            'model.neck.in_channels=64', 'model.transform_neck.in_channels=64']


@pytest.fixture
def bf16(monkeypatch):
    monkeypatch.setattr(runner_mod, 'cpu_bf16_support', lambda: (True, 'forced by the test'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


def _record_backbone_calls(runner, seen):
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model

    def pre_hook(_module, args):
        x = args[0]
        if not torch.is_grad_enabled():  # not a training step (e.g. the collapse monitor's probe)
            return
        seen.append(dict(autocast=torch.is_autocast_enabled('cpu'),
                         dtype=torch.get_autocast_dtype('cpu'), shape=tuple(x.shape),
                         nhwc=x.is_contiguous(memory_format=torch.channels_last)
                         and not x.is_contiguous()))
    model.backbone.register_forward_pre_hook(pre_hook)
    return model


@pytest.mark.parametrize('amp', [True, False], ids=['amp', 'fp32'])
def test_amp_flag_sets_the_autocast_dtype_seen_in_the_forward(bf16, tiny_tree, tmp_path, amp):
    """tools/train.py's path on a tiny model: with --amp the training forward runs under
    bfloat16 autocast on the CPU, without it under no autocast."""
    cfg_path = _write_cfg(tmp_path, tiny_tree, bad_at=100)
    args = train_api.parse_args([cfg_path, '--work-dir', str(tmp_path / 'w')] +
                                (['--amp'] if amp else []))
    runner = train_api.build_runner(train_api.merge_args(load_config(cfg_path), args))
    seen = []
    runner.model.register_forward_pre_hook(lambda m, a: seen.append(
        (torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'))))
    runner.train()
    assert len(seen) == 8  # one forward per iteration
    assert set(seen) == ({(True, torch.bfloat16)} if amp else {(False, torch.bfloat16)}) \
        or (not amp and {a for a, _ in seen} == {False})


def test_main_job_config_trains_with_bf16_autocast_and_channels_last(bf16, tiny_tree, tmp_path):
    """The main-job config (small-image stem, channels_last=True) runs 2 iterations with --amp:
    every backbone call of the training step (image view and patches) runs under bfloat16
    autocast on NHWC inputs with NHWC conv weights; the knn_eval random-init row builds the same
    backbone (the trained checkpoint loads into it strictly)."""
    work = str(tmp_path / 'w')
    argv = [MAIN_CFG, '--work-dir', work, '--amp']
    args = train_api.parse_args(argv + ['--cfg-options', *_tiny_pirl(tiny_tree, work)])
    cfg = train_api.merge_args(load_config(MAIN_CFG), args)
    runner = train_api.build_runner(cfg)
    seen = []
    model = _record_backbone_calls(runner, seen)
    runner.train()
    assert isinstance(runner.optim_wrapper, CPUAmpOptimWrapper)
    assert len(seen) == 2 * 2  # 2 iterations x (image view, patches)
    assert {(s['autocast'], s['dtype']) for s in seen} == {(True, torch.bfloat16)}
    assert {s['shape'][-1] for s in seen} == {32, 12}  # the image view and the 12 px patches
    assert all(s['nhwc'] for s in seen)
    conv = model.backbone.conv1.weight
    assert conv.shape[-1] == 3 and model.backbone.conv1.stride == (1, 1)  # small-image stem
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert all(torch.isfinite(p).all() for p in model.parameters())

    knn_cfg = load_config(MAIN_CFG)
    knn_cfg.merge_from_dict({'model.backbone.stem_channels': 8, 'model.backbone.base_channels': 8})
    random_init = build_model(knn_cfg, 0)  # what tools/knn_eval.py --baseline evaluates
    assert type(random_init.backbone) is type(model.backbone)
    load_backbone_weights(random_init, osp.join(work, 'iter_2.pth'))  # strict: same layers


def test_amp_without_native_bf16_falls_back_to_fp32_with_a_message(monkeypatch, tmp_path):
    monkeypatch.setattr(runner_mod, 'cpu_bf16_support', lambda: (False, 'no AMX in the test'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        args = train_api.parse_args([MAIN_CFG, '--work-dir', str(tmp_path), '--amp'])
        cfg = train_api.merge_args(load_config(MAIN_CFG), args)
    finally:
        logger.removeHandler(handler)
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert any('no AMX in the test' in m and 'float32' in m for m in messages), messages


def test_cpu_amp_wrapper_rejects_float16():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match='bfloat16 only'):
        CPUAmpOptimWrapper(dtype='float16',
                           optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_channels_last_tensors_converts_image_tensors():
    x = torch.arange(2 * 3 * 4 * 5.).reshape(2, 3, 4, 5)
    patches = torch.arange(2 * 9 * 3 * 4 * 5.).reshape(2, 9, 3, 4, 5)
    out = channels_last_tensors(dict(a=[x, torch.ones(3)], b=(patches, ), c='text'))
    assert out['a'][0].is_contiguous(memory_format=torch.channels_last)
    assert out['a'][0].stride() == (60, 1, 15, 3)  # N, C, H, W strides of NHWC storage
    assert torch.equal(out['a'][0], x) and out['a'][1].is_contiguous() and out['c'] == 'text'
    assert isinstance(out['b'], tuple) and torch.equal(out['b'][0], patches)
    flat = out['b'][0].flatten(0, 1)  # PIRL's B*9 patch batch: still NHWC, no copy
    assert flat.data_ptr() == out['b'][0].data_ptr()
    assert flat.is_contiguous(memory_format=torch.channels_last) and not flat.is_contiguous()


def test_bf16_run_resumes_exactly(bf16, tiny_tree, tmp_path, monkeypatch):
    """The PIRL family's exact-resume check (tests/cli/test_exact_resume.py) with --amp (the
    ImageNet-stem config at width 8: cheaper): the interrupted + resumed bfloat16 run gives the
    uninterrupted run's losses and weights."""
    parse = train_api.parse_args
    monkeypatch.setattr(train_api, 'parse_args', lambda argv: parse(argv[:1] + ['--amp'] +
                                                                    argv[1:]))
    build = train_api.build_runner
    wrappers = []

    def build_and_record(cfg):
        runner = build(cfg)
        wrappers.append(cfg.optim_wrapper.type)
        return runner
    monkeypatch.setattr(train_api, 'build_runner', build_and_record)
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=12', 'model.memory_bank.length=24',
            'model.memory_bank.num_negatives=16', 'model.backbone.stem_channels=8',
            'model.backbone.base_channels=8', 'model.neck.in_channels=64',
            'model.transform_neck.in_channels=64', *exact._COMMON]
    exact._check_exact_resume(exact.PIRL_CFG, opts, tmp_path, buffers=['memory_bank.feats'],
                              controls=())  # the controls: test_exact_resume.py, same config
    assert set(wrappers) == {'CPUAmpOptimWrapper'} and len(wrappers) == 3


def test_nan_guard_stops_a_bf16_run(bf16, tiny_tree, tmp_path):
    work = str(tmp_path / 'work')
    cfg_path = _write_cfg(tmp_path, tiny_tree, bad_at=4)
    with pytest.raises(NonFiniteLossError, match='at iteration 4 '):
        train_api.main([cfg_path, '--work-dir', work, '--amp'])
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    assert not osp.exists(osp.join(work, 'iter_4.pth'))


def test_strided_conv_on_a_1px_input_runs_in_float32_under_bf16_autocast():
    """oneDNN's bfloat16 kernel gives non-finite weight gradients at random for a strided conv on
    a 1 x 1 input (the last ResNet stage on small patches): the guard runs it in float32, i.e.
    with the float32 conv's exact gradients, and leaves larger inputs in bfloat16."""
    from mmssl_ext.engine.cpu_amp import guard_strided_convs_on_1px_inputs
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.Conv2d(16, 4, 1))
    ref = copy.deepcopy(model)
    assert guard_strided_convs_on_1px_inputs(model) == 1
    for hw, dtype in [(1, torch.float32), (4, torch.bfloat16)]:
        x = torch.randn(4, 8, hw, hw)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            y = model[0](x)
            assert y.dtype == dtype and torch.is_autocast_enabled('cpu')
    model.zero_grad()
    x = torch.randn(4, 8, 1, 1)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model[0](x).float().sum().backward()
    ref[0](x).sum().backward()
    assert torch.equal(model[0].weight.grad, ref[0].weight.grad)


def test_speed_benchmark_modes_configure_the_child_and_report_ratios(tmp_path):
    """benchmarks.speed --modes: the bf16+cl child trains with CPUAmpOptimWrapper and the
    channels_last key; each row's ratio is to the same method's first mode, the MoCo v2 ratio to
    MoCo v2 in the same mode."""
    from benchmarks import speed
    args = speed.parse_args(['--methods', 'pirl', '--modes', 'fp32', 'bf16+cl'])
    args.amp, args.channels_last = speed.MODES['bf16+cl']
    cfg = speed.build_config('pirl', args, str(tmp_path))
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper' and cfg.channels_last is True
    report = dict(settings=dict(modes=['fp32', 'bf16+cl']), rows={})
    ips = {('mocov2', 'fp32'): 200., ('mocov2', 'bf16+cl'): 260., ('pirl', 'fp32'): 50.,
           ('pirl', 'bf16+cl'): 80.}
    for (name, mode), v in ips.items():
        report['rows'][speed.row_key(name, mode)] = dict(method=name, mode=mode,
                                                         images_per_second=v, peak_mib=1.)
    speed.add_ratios(report)
    row = report['rows']['pirl [bf16+cl]']
    assert row['mode_ratio'] == round(80 / 50, 2)
    assert row['images_per_second_ratio'] == round(80 / 260, 2)
    with pytest.raises(SystemExit):  # float16 autocast needs a GPU
        speed.parse_args(['--modes', 'fp32', 'fp16'])


def test_amp_config_key_is_the_flags_default(bf16, tmp_path):
    """`amp = True` in a config trains as `--amp` does; `--cfg-options amp=False` turns it off."""
    def wrapper_type(argv, extra_cfg=None):
        args = train_api.parse_args([MAIN_CFG, '--work-dir', str(tmp_path), *argv])
        cfg = load_config(MAIN_CFG)
        cfg.merge_from_dict(extra_cfg or {})
        return train_api.merge_args(cfg, args).optim_wrapper.get('type', 'OptimWrapper')

    assert wrapper_type([]) == 'OptimWrapper'
    assert wrapper_type(['--amp']) == 'CPUAmpOptimWrapper'
    assert wrapper_type([], {'amp': True}) == 'CPUAmpOptimWrapper'
    assert wrapper_type(['--cfg-options', 'amp=True']) == 'CPUAmpOptimWrapper'
    assert wrapper_type(['--cfg-options', 'amp=False'], {'amp': True}) == 'OptimWrapper'


ROTATION_MAIN_CFG = osp.join(REPO, 'configs/pirl/pirl-rotation_r18-w32_1xb64-6000it_fmnist.py')


def test_rotation_main_job_trains_in_float32_channels_last_on_rotated_views(tiny_tree, tmp_path):
    """scripts/main.sh's config runs 2 iterations as `bash scripts/main.sh` starts it (no --amp):
    float32, NHWC from its `channels_last` key, the image view and the rotated view both whole
    32 px images, and the rotation labels of the batch are packed for the model."""
    work = str(tmp_path / 'w')
    args = train_api.parse_args([ROTATION_MAIN_CFG, '--work-dir', work, '--cfg-options',
                                 *_tiny_pirl(tiny_tree, work)])
    cfg = train_api.merge_args(load_config(ROTATION_MAIN_CFG), args)
    runner = train_api.build_runner(cfg)
    seen = []
    model = _record_backbone_calls(runner, seen)
    labels = []
    original = model.loss

    def loss(inputs, data_samples, **kw):
        labels.extend(int(s.rot_label) for s in data_samples)
        return original(inputs, data_samples, **kw)
    model.loss = loss
    runner.train()
    assert len(seen) == 2 * 2  # 2 iterations x (image view, rotated view)
    assert {s['shape'][1:] for s in seen} == {(3, 32, 32)}
    assert {s['autocast'] for s in seen} == {False} and all(s['nhwc'] for s in seen)
    assert len(labels) == 2 * 4 and set(labels) <= {0, 1, 2, 3}
    assert all(torch.isfinite(p).all() for p in model.parameters())
