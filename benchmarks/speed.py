"""Training speed and memory per method at a fixed batch and resolution, as ratios to mmpretrain's
MoCo v2 measured in the same run.

Methods: the Fashion-MNIST configs of ``benchmarks.quality`` (``METHODS`` with its
``OVERRIDES``: ResNet-18 at half width, 32 px; ``mocov2`` is mmpretrain's MoCo v2, the reference,
always measured; ClusterFit once, as ``clusterfit``: its fit step, the cluster step is in
``benchmarks.kmeans``).  Every method runs in its own process (``--child NAME``, one JSON line
back), so that its peak memory is its own.

What is timed: the real training step of mmengine's ``Runner`` (``tools/train.py``'s config
handling, so SyncBN is reverted to BN in one process, and the safety hooks run), i.e. the data
preprocessor, forward, loss, backward, optimizer step, parameter schedulers and every hook of the
method (momentum encoders, memory banks, ODC's small-cluster pass ...), from the end of one
iteration to the end of the next.  Not timed: the one-off set-up before the first iteration (the
initial clustering pass of DeepCluster / ODC: ``setup s``; DeepCluster re-clusters once per
dataloader epoch, i.e. every 156 iterations of its config, which ``images / s`` leaves out),
``--warmup`` iterations, and data loading: ``--batches`` batches are drawn through the config's
real pipeline and sampler before training and cycled.  No checkpoints, no validation.

* ``images / s``: training samples (source images) per second, ``batch x steps / seconds``;
* ``backbone images / s``: times the method's backbone images per sample (pixels through
  ``model.backbone`` per sample / 32^2, measured with a forward pre-hook in the first warm-up
  iteration, as ``quality.backbone_images_per_sample``: PIRL 3.25, SimCLR 2 ...);
* memory, CPU: ``peak RSS`` = the child's ``ru_maxrss`` at the end (set-up included), and
  ``step memory`` = the peak RSS during the iterations (``VmHWM``, reset after the set-up:
  warm-up and the optimizer state's first allocation included) minus the RSS before them
  (model, optimizer, data batches built; free heap trimmed); GPU: ``max_memory_allocated``
  after ``reset_peak_memory_stats`` at the same point, and that minus ``memory_allocated``
  there.  SyncBN (mmpretrain's necks) is reverted to BN by the Runner in one process.

CPU: ``--threads`` torch threads (and ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``) in each child;
``--amp bf16``: bfloat16 autocast (``tools/train.py --amp``'s ``CPUAmpOptimWrapper``).
GPU (``--device cuda``): AMP with mmengine's ``AmpOptimWrapper`` (``--amp fp16|bf16|none``),
``cudnn.benchmark`` on, ``torch.cuda.synchronize`` around the timing.  ``--channels-last``
converts the model and its inputs (the ``channels_last`` config key).  ``--modes fp32 bf16 cl
bf16+cl`` measures every method in each of these settings in one run (``cl``: channels_last),
each in its own child, with the speed ratio to the method's first mode (``x <first mode>``).

    .venv/bin/python -m benchmarks.speed                         # CPU, all methods, 2 threads
    .venv/bin/python -m benchmarks.speed --methods pirl simclr --steps 20
    .venv/bin/python -m benchmarks.speed --device cuda --amp fp16 --channels-last
    .venv/bin/python -m benchmarks.speed --methods pirl simclr --modes fp32 bf16 cl bf16+cl

Writes ``benchmarks/results/speed_<methods>_<device>[-<amp>][-cl][-<modes>][-b<batch>].json`` and
``.md``
(``--tag`` names them instead), with the command, the machine and the date.
"""
import argparse
import itertools
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from benchmarks import measure as mem
from benchmarks import report as rep
from benchmarks.quality import (CLUSTERFIT_PRE, KNOWN_IMAGES_PER_SAMPLE,
                                METHODS as QUALITY_METHODS, OVERRIDES, REFERENCE_PIXELS,
                                counting_pixels)
from benchmarks.report import REPO

#: quality.py's methods; of ClusterFit's rows only 'clusterfit': the others differ in N_pre, i.e.
#: in the labels, not in the training step (the fit config's), which is what is timed here
METHODS = {name: config for name, config in QUALITY_METHODS.items()
           if name not in CLUSTERFIT_PRE or name == 'clusterfit'}

#: methods whose hook switches the full loss on after warm-up epochs: here from iteration 0, so
#: that the timed steps are LA's / PCL's loss, not the warm-up's (NPID's / MoCo's)
SPEED_OVERRIDES: Dict[str, dict] = {
    'local_aggregation': {'custom_hooks.0.start_epoch': 0},
    'pcl': {'custom_hooks.0.warmup_epochs': 0},
    # SeLa spreads its label optimisations over the run: in a run this short, one (iteration 0)
    'sela': {'custom_hooks.0.num_opts': 1}}

REFERENCE = 'mocov2'
RESULT_PREFIX = 'SPEED_RESULT '
MIB = 2**20
AMP_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}
#: --modes: name -> (--amp, --channels-last)
MODES = {'fp32': ('none', False), 'bf16': ('bf16', False), 'fp16': ('fp16', False),
         'cl': ('none', True), 'bf16+cl': ('bf16', True), 'fp16+cl': ('fp16', True)}


# ------------------------------------------------------------------------------------- child
def build_config(name: str, args, work_dir: str):
    """The method's config as ``tools/train.py`` would run it, with the benchmark's loop."""
    from mmssl_ext.cli import train as train_api
    from mmssl_ext.utils.config import load_config
    config = osp.join(REPO, METHODS[name])
    cfg = load_config(config)
    cfg.merge_from_dict(OVERRIDES.get(name, {}))
    cfg.merge_from_dict(SPEED_OVERRIDES.get(name, {}))
    if name in CLUSTERFIT_PRE:
        # the fit step's speed does not depend on which K ids the images carry: train on the
        # data set's own label list (no cluster step needed), with the config's K-way head
        cfg.train_dataloader.dataset.ann_file = 'meta/train.txt'
    train_args = train_api.parse_args([config, '--work-dir', work_dir, '--no-validate',
                                       '--no-persistent-workers'])
    cfg = train_api.merge_args(cfg, train_args)
    loader = cfg.train_dataloader
    loader.update(batch_size=args.batch, num_workers=0, persistent_workers=False)
    if args.device == 'cpu':
        loader.pin_memory = False
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.warmup + args.steps)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10**9)
    cfg.log_level = 'WARNING'
    cfg.experiment_name = f'speed_{name}'
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    cfg.channels_last = args.channels_last  # SSLRunner converts the model and its inputs
    if args.device == 'cuda':
        cfg.setdefault('env_cfg', {})['cudnn_benchmark'] = True
        if args.amp != 'none':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.dtype = AMP_DTYPES[args.amp]
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif args.amp == 'bf16':
        cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    return cfg


def _make_hooks(args, state: dict):
    """``(first, last)``: hooks run first / last at each hook point."""
    import torch
    from mmengine.hooks import Hook
    cuda = args.device == 'cuda'

    def sync():
        if cuda:
            torch.cuda.synchronize()

    class SetupStart(Hook):
        priority = 'HIGHEST'

        def before_train(self, runner) -> None:
            state['setup_start'] = time.perf_counter()

    class SpeedHook(Hook):
        """After the set-up: pre-load batches, measure pixels per sample and time iterations."""
        priority = 'LOWEST'

        def before_train(self, runner) -> None:
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            loop = runner.train_loop
            state['setup_seconds'] = time.perf_counter() - state['setup_start']
            # the Runner reverts SyncBN (mmpretrain's necks) to BN in a one-process run; make sure
            if any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()):
                from mmengine.model import revert_sync_batchnorm
                revert_sync_batchnorm(model)  # in place below the root; parameters are kept
            batches = [next(loop.dataloader_iterator) for _ in range(args.batches)]
            loop.dataloader_iterator = itertools.cycle(batches)
            backbone = getattr(model, 'backbone', None)
            self._count = None if backbone is None else counting_pixels(backbone)
            state['pixels'] = [] if self._count is None else self._count.__enter__()
            torch.set_num_threads(args.threads)  # whatever the set-up did
            self._stamps = []
            mem.trim_heap()
            sync()
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                state['base_bytes'] = torch.cuda.memory_allocated()
            else:
                state['base_bytes'] = mem.rss()
                state['hwm_reset'] = mem.reset_hwm()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            sync()
            self._stamps.append(time.perf_counter())
            if self._count is not None:  # one iteration counted: the first warm-up one
                self._count.__exit__(None, None, None)
                self._count = None
            if batch_idx == 0 and outputs is not None:
                state['loss'] = {k: round(float(torch.as_tensor(v).detach()), 4)
                                 for k, v in outputs.items()
                                 if isinstance(v, (int, float, torch.Tensor))
                                 and torch.as_tensor(v).numel() == 1}

        def after_train(self, runner) -> None:
            t = self._stamps
            state['iteration_seconds'] = [
                b - a for a, b in zip(t[args.warmup - 1:-1], t[args.warmup:])]

    return SetupStart(), SpeedHook()


def child(name: str, args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    import mmssl_ext  # noqa: F401
    from mmssl_ext.engine.runner import build_runner
    work_dir = tempfile.mkdtemp(prefix=f'speed_{name}_')
    state: Dict = {}
    try:
        cfg = build_config(name, args, work_dir)
        runner = build_runner(cfg)
        for hook in _make_hooks(args, state):
            runner.register_hook(hook)
        runner.train()
        if args.device == 'cuda':
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            reserved = torch.cuda.max_memory_reserved()
        else:
            peak, reserved = mem.maxrss(), None
            train_peak = mem.hwm() if state.get('hwm_reset') else None
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    seconds = sum(state['iteration_seconds'])
    pixels = state.get('pixels') or []
    # a method whose hook extracts features in the first iteration (SeLa) counts those too
    per_sample = KNOWN_IMAGES_PER_SAMPLE.get(name) or (
        sum(pixels) / args.batch / REFERENCE_PIXELS if pixels else None)
    row = dict(config=METHODS[name], overrides=OVERRIDES.get(name, {}),
               images_per_second=round(args.batch * args.steps / seconds, 2),
               images_per_sample=None if per_sample is None else round(per_sample, 3),
               seconds=round(seconds, 3),
               iteration_ms=[round(1000 * s, 1) for s in state['iteration_seconds']],
               setup_seconds=round(state['setup_seconds'], 2),
               first_loss=state.get('loss'), threads=torch.get_num_threads())
    if per_sample is not None:
        row['backbone_images_per_second'] = round(row['images_per_second'] * per_sample, 2)
    base = state.get('base_bytes')
    row['peak_mib'] = round(peak / MIB, 1)
    if args.device == 'cuda':
        row['reserved_mib'] = round(reserved / MIB, 1)
        row['step_mib'] = round((peak - base) / MIB, 1)
        row['gpu'] = torch.cuda.get_device_name(0)
    else:
        row['base_rss_mib'] = None if base is None else round(base / MIB, 1)
        if train_peak is not None and base is not None:
            row['train_peak_rss_mib'] = round(train_peak / MIB, 1)
            row['step_mib'] = round((train_peak - base) / MIB, 1)
    return row


# ------------------------------------------------------------------------------------ parent
def run_child(name: str, args) -> dict:
    cmd = [sys.executable, '-m', 'benchmarks.speed', '--child', name, '--device', args.device,
           '--batch', str(args.batch), '--steps', str(args.steps), '--warmup', str(args.warmup),
           '--batches', str(args.batches), '--threads', str(args.threads), '--amp', args.amp]
    if args.channels_last:
        cmd.append('--channels-last')
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    if args.device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = '-1'  # mmengine's way to train on the CPU
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return dict(config=METHODS[name], error=f'timed out after {args.timeout} s')
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            row = json.loads(line[len(RESULT_PREFIX):])
            row['wall_seconds'] = round(time.time() - start, 1)
            return row
    err = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    last = err[-1] if err else f'exit status {proc.returncode}'
    return dict(config=METHODS[name], error=last[:300], returncode=proc.returncode,
                log_tail='\n'.join(err[-30:]))


def row_key(name: str, mode: Optional[str]) -> str:
    return name if mode is None else f'{name} [{mode}]'


def add_ratios(report: dict) -> None:
    modes = report['settings'].get('modes') or [None]
    for row in report['rows'].values():
        if 'error' in row:
            continue
        mode = row.get('mode')
        ref = report['rows'].get(row_key(REFERENCE, mode), {})
        for key in ('images_per_second', 'peak_mib', 'step_mib'):
            a, b = row.get(key), ref.get(key)
            row[f'{key}_ratio'] = round(a / b, 2) if a is not None and b else None
        if mode is not None:  # speed-up over the same method's first mode
            b = report['rows'].get(row_key(row['method'], modes[0]), {}).get('images_per_second')
            row['mode_ratio'] = round(row['images_per_second'] / b, 2) if b else None


def _fmt(x, digits=1) -> str:
    return '-' if x is None else f'{x:,.{digits}f}'


def markdown(report: dict) -> str:
    cuda = report['device'] == 'cuda'
    s = report['settings']
    if cuda:
        mode = (f"AMP {s['amp']}, channels_last {'on' if s['channels_last'] else 'off'}, "
                f"cudnn.benchmark on")
    else:
        mode = f"{s['threads']} torch thread{'s' if s['threads'] > 1 else ''}"
        mode += ', channels_last' if s['channels_last'] else ''
    modes = s.get('modes')
    if modes:
        mode = f"modes {', '.join(modes)} (cl: channels_last)" + ('' if cuda else f", {mode}")
    peak = 'peak allocated MiB' if cuda else 'peak RSS MiB'
    lines = [f"## Training speed and memory, {report['device'].upper()} ({report['date']})", '',
             *rep.provenance(report)[:2],
             f"Setting: batch {s['batch']}, the configs' 32 px, {mode}; {s['warmup']} warm-up "
             f"+ {s['steps']} timed iterations of the Runner's training step; {report['data']}; "
             f"ratios to `{REFERENCE}` (mmpretrain's MoCo v2) of this run"
             + (f" in the same mode; `x {modes[0]}`: images / s over the method's {modes[0]} row"
                if modes else '') + '.', '',
             '| method | images / s | x MoCo v2 | ' + (f'x {modes[0]} | ' if modes else '') +
             'backbone images / sample | backbone images / s '
             f'| {peak} | x MoCo v2 | step MiB | x MoCo v2 | setup s |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|' + ('---:|' if modes else '')]
    for name, r in report['rows'].items():
        if 'error' in r:
            lines.append(f"| {name} | error: {r['error'].replace('|', '/')} | | | | | | | | |" +
                         (' |' if modes else ''))
            continue
        lines.append(
            f"| {name} | {_fmt(r['images_per_second'])} | {_fmt(r['images_per_second_ratio'], 2)}"
            + (f" | {_fmt(r.get('mode_ratio'), 2)}" if modes else '') +
            f" | {_fmt(r.get('images_per_sample'), 2)} | "
            f"{_fmt(r.get('backbone_images_per_second'))} | {_fmt(r['peak_mib'], 0)} | "
            f"{_fmt(r['peak_mib_ratio'], 2)} | {_fmt(r.get('step_mib'), 0)} | "
            f"{_fmt(r.get('step_mib_ratio'), 2)} | {_fmt(r.get('setup_seconds'))} |")
    if cuda:
        memory = ('`peak allocated`: `torch.cuda.max_memory_allocated` over the training '
                  'iterations (warm-up included); `step MiB`: that minus the memory allocated '
                  'before them (model, optimizer, batches).')
    else:
        memory = ("`peak RSS`: the process's `ru_maxrss`, set-up included (the clustering pass "
                  'of DeepCluster / ODC); `step MiB`: the peak RSS during the training '
                  'iterations (warm-up included) minus the RSS before them (model, optimizer, '
                  'batches).')
    lines += ['', '`images / s`: training samples (source images) per second; `backbone images '
              '/ s`: 32 px images through the trained backbone per second. ' + memory +
              ' `setup s`: before the first iteration (DeepCluster / ODC: the initial '
              'clustering; DeepCluster repeats it every dataloader epoch, not in images / s).']
    return '\n'.join(lines) + '\n'


def result_name(args: argparse.Namespace) -> str:
    """``<methods>_<device>[-<amp>][-cl][-b<batch>]`` (``all`` for every method; the reference,
    always measured, named only when it is alone): what the results file of ``args`` holds."""
    what = ['all'] if 'all' in args.methods or set(METHODS) <= set(args.methods) else \
        [m for m in dict.fromkeys(args.methods) if m != REFERENCE] or [REFERENCE]
    return rep.result_name(what, 'gpu' if args.device == 'cuda' else args.device,
                           '' if args.amp == 'none' or args.modes else args.amp,
                           'cl' if args.channels_last and not args.modes else '',
                           '-'.join(m.replace('+', '') for m in args.modes or []),
                           '' if args.batch == 64 else f'b{args.batch}')


def _write(report: dict, args) -> None:
    rep.write(report, markdown(report), 'speed', args.tag, args.out)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m benchmarks.speed',
                                description=__doc__.splitlines()[0])
    p.add_argument('--methods', nargs='+', choices=sorted(METHODS) + ['all'], default=['all'],
                   help=f'methods (default all; {REFERENCE} is always measured)')
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    p.add_argument('--batch', type=int, default=64, help='train_dataloader.batch_size')
    p.add_argument('--steps', type=int, help='timed iterations (default 10 CPU, 50 GPU)')
    p.add_argument('--warmup', type=int,
                   help='untimed iterations first, >= 1 (default 3 CPU, 10 GPU: cudnn autotuning '
                   'and the AMP loss-scale search)')
    p.add_argument('--batches', type=int, default=4,
                   help='batches pre-loaded through the real pipeline and cycled')
    p.add_argument('--threads', type=int, default=2, help='torch threads per child')
    p.add_argument('--amp', choices=['fp16', 'bf16', 'none'],
                   help="mixed precision (GPU: default fp16; CPU: default none, or bf16)")
    p.add_argument('--channels-last', action='store_true',
                   help='model and inputs in channels_last memory format')
    p.add_argument('--modes', nargs='+', choices=list(MODES),
                   help='measure each method in each of these settings (instead of --amp / '
                   '--channels-last), with ratios to the first, e.g. fp32 bf16 cl bf16+cl')
    p.add_argument('--timeout', type=int, default=3600, help='seconds per method')
    p.add_argument('--out', default=rep.RESULTS)
    p.add_argument('--tag', help='results file name: speed_<tag>.json (default: what it '
                   'measures, see result_name)')
    p.add_argument('--child', choices=sorted(METHODS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cuda = args.device == 'cuda'
    if args.steps is None:
        args.steps = 50 if cuda else 10
    if args.warmup is None:
        args.warmup = 10 if cuda else 3
    if args.amp is None:
        args.amp = 'fp16' if cuda else 'none'
    if args.warmup < 1 or args.steps < 1 or args.batches < 1 or args.batch < 1:
        p.error('--warmup, --steps, --batches and --batch must be >= 1')
    if not cuda and (args.amp == 'fp16' or any('fp16' in m for m in args.modes or [])):
        p.error('float16 AMP needs --device cuda (CPU autocast runs in bfloat16: --amp bf16)')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.child:
        row = child(args.child, args)
        print(RESULT_PREFIX + json.dumps(row), flush=True)
        return row
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available (torch '
                         f'{torch.__version__}, CUDA build {torch.version.cuda})')
    methods = list(METHODS) if 'all' in args.methods else list(dict.fromkeys(args.methods))
    methods = [REFERENCE] + [m for m in methods if m != REFERENCE]
    settings = dict(batch=args.batch, steps=args.steps, warmup=args.warmup,
                    threads=args.threads, amp=args.amp, channels_last=args.channels_last,
                    modes=args.modes)
    report = rep.new_report('benchmarks.speed', argv, device=args.device, settings=settings,
                            reference=REFERENCE,
                            data=f'{args.batches} batches pre-loaded through the real pipeline '
                                 f'and cycled (data loading not timed)',
                            machine=rep.machine(args.threads, args.device), rows={})
    args.tag = args.tag or result_name(args)
    for name, mode in itertools.product(methods, args.modes or [None]):
        key = row_key(name, mode)
        if mode is not None:
            args.amp, args.channels_last = MODES[mode]
        if not osp.isfile(osp.join(REPO, METHODS[name])):
            report['rows'][key] = dict(config=METHODS[name], error='config missing')
        else:
            print(f'[{key}] ...', flush=True)
            report['rows'][key] = run_child(name, args)
        r = report['rows'][key]
        if mode is not None:
            r.update(method=name, mode=mode)
        print(f"[{key}] " + (f"error: {r['error']}" if 'error' in r else
                             f"{r['images_per_second']} images/s, peak {r['peak_mib']} MiB, "
                             f"step {r.get('step_mib')} MiB"), flush=True)
        add_ratios(report)
        _write(report, args)
    print(markdown(report))
    return report


if __name__ == '__main__':
    main()
