"""The peers' harness: lightly's side trained in a plain torch loop, ours through
``benchmarks.quality``, both scored by ``quality.evaluate``; the report and the command line."""
import argparse
import copy
import json
import math
import os
import os.path as osp
import random
import time
import traceback
from typing import List, Optional

import numpy as np
import torch

from benchmarks import quality
from benchmarks import report as rep
from benchmarks.peers.byol import BYOLPeer
from benchmarks.peers.common import OURS, method_cfg, quiet_mmengine, schedule, training_files
from benchmarks.peers.dino import DINOPeer
from benchmarks.peers.mocov2 import MoCoV2Peer
from benchmarks.peers.pirl import PIRLPeer
from benchmarks.peers.simclr import SimCLRPeer
from benchmarks.report import REPO

#: the methods lightly and we both have (names as in quality.METHODS) -> the lightly model
PEERS = {cls.name: cls for cls in (SimCLRPeer, MoCoV2Peer, BYOLPeer, PIRLPeer, DINOPeer)}
PEER_METHODS = tuple(PEERS)


# ------------------------------------------------------------------------------ training
def _seed_worker(worker_id: int) -> None:
    # lightly's Jigsaw / solarisation / blur draw from numpy: give every worker its own stream
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def images_per_sample(name: str, cfg, dataset, num: int = 4, peer_cls=None) -> float:
    """Pixels through the *trained* backbone per sample, in 32 x 32 images: quality.py's
    measurement (a forward pre-hook over one real batch), on a throw-away lightly model.  Momentum
    / teacher encoders are copies, not hooked: not counted, as in quality.py."""
    probe = (peer_cls or PEERS[name])(cfg)
    probe.train()
    samples = [dataset[i][0] for i in range(num)]
    views = [torch.stack(v) for v in zip(*samples)]
    # the backbone inside the pooling wrapper: a model that calls it directly is counted too
    with quality.counting_pixels(getattr(probe.backbone, 'net', probe.backbone)) as pixels, \
            torch.no_grad():
        probe.loss(views, 0, 2)
    return sum(pixels) / num / quality.REFERENCE_PIXELS


def run_lightly(name: str, args, preset: dict, device: torch.device, peer_cls=None,
                cfg=None) -> dict:
    """lightly's side: the plain loop.  ``peer_cls`` (default ``PEERS[name]``) and ``cfg``
    (default the method's config for ``preset``) let ``variants.py`` run another model in it."""
    from lightly.data import LightlyDataset
    from lightly.utils.scheduler import CosineWarmupScheduler
    peer_cls = peer_cls or PEERS[name]
    cfg = cfg if cfg is not None else method_cfg(name, preset)
    batch = cfg.train_dataloader.batch_size
    _seed(args.seed)
    t0 = time.time()
    peer = peer_cls(cfg)
    transform, specs = peer.transform()
    root, files = training_files(cfg)
    dataset = LightlyDataset(root, transform=transform, filenames=files)
    build_seconds = time.time() - t0  # counted as training time, as in quality.py's timing
    per_sample = images_per_sample(name, cfg, dataset, peer_cls=peer_cls)
    _seed(args.seed)
    iters = max(1, math.ceil(preset['budget'] / (batch * per_sample)))
    row = dict(method=name,
               implementation=getattr(peer, 'implementation', f'lightly {_lightly_version()}'),
               config=quality.METHODS[name], overrides=quality.OVERRIDES.get(name, {}),
               train_images=len(dataset), batch_size=batch, seed=args.seed,
               images_per_sample=round(per_sample, 3), iterations=iters, samples=iters * batch,
               backbone_images=round(iters * batch * per_sample))
    who = f"[{name} / {row['implementation']}]"  # log prefix: lightly's, or ours in its loop
    if not args.no_check_budget:
        with quiet_mmengine():
            ours = quality.KNOWN_IMAGES_PER_SAMPLE.get(name) or \
                quality.backbone_images_per_sample(cfg)
        row['ours_images_per_sample'] = round(ours, 3)
        if abs(ours - per_sample) > 1e-3:
            peer.notes.append(f'backbone images per sample differ: lightly {per_sample:.3f}, '
                              f'ours {ours:.3f}')
    print(f'{who} {len(dataset)} images, {per_sample:.2f} backbone images per '
          f'sample -> {iters} iterations x {batch}', flush=True)
    if args.dry_run:
        row.update(notes=peer.notes)
        return row

    start = time.time() - build_seconds
    peer.to(device)
    optimizer = peer.optimizer()
    sched = schedule(cfg, iters)
    scheduler = CosineWarmupScheduler(
        optimizer, warmup_epochs=sched['warmup_iters'], max_epochs=iters, start_value=1.0,
        end_value=sched['final_lr_factor'], warmup_start_value=sched['warmup_start_factor'])
    peer.hparams.update(
        schedule=f"CosineWarmupScheduler: linear warm-up from {sched['warmup_start_factor']}x "
                 f"over {sched['warmup_iters']} iterations, cosine to "
                 f"{sched['final_lr_factor']}x at {iters}",
        batch_size=batch, drop_last=bool(cfg.train_dataloader.get('drop_last', False)),
        workers=preset['workers'])
    gen = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, drop_last=peer.hparams['drop_last'],
        num_workers=preset['workers'], persistent_workers=preset['workers'] > 0,
        worker_init_fn=_seed_worker, generator=gen, pin_memory=device.type == 'cuda')

    def batches():
        while True:
            yield from loader

    peer.train()
    log_every = max(1, min(50, iters // 20))
    losses, curve = [], []
    skip = max(1, iters // 10)
    loop_start = None
    stream = batches()
    for it in range(iters):
        if it == skip:
            _sync(device)
            loop_start = time.time()
        views = [v.to(device, non_blocking=True) for v in next(stream)[0]]
        loss = peer.loss(views, it, iters)
        if not torch.isfinite(loss):
            raise FloatingPointError(f'{name} (lightly): loss {loss.item()} at iteration {it}')
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        peer.before_optimizer_step(it)
        lr = optimizer.param_groups[0]['lr']
        optimizer.step()
        scheduler.step()
        peer.after_optimizer_step(it, iters)
        losses.append(float(loss.detach()))
        if it % log_every == 0 or it == iters - 1:
            curve.append([it, round(losses[-1], 4)])
            print(f'{who} iter {it + 1}/{iters} loss {losses[-1]:.4f} lr {lr:.5f} '
                  f"{peer.diagnostics or ''}", flush=True)
    _sync(device)
    loop_end = time.time()
    work = osp.join(args.work_dir, 'lightly')
    os.makedirs(work, exist_ok=True)
    ckpt = osp.join(work, f'{name}_iter_{iters}.pth')
    torch.save(dict(state_dict=peer.backbone_state(),
                    meta=dict(method=name, implementation=row['implementation'],
                              iterations=iters)), ckpt)
    row['train_seconds'] = round(time.time() - start, 1)
    row['images_per_second'] = round(row['samples'] / row['train_seconds'], 1)
    if loop_start is not None and iters > skip:
        row['loop_images_per_second'] = round((iters - skip) * batch / (loop_end - loop_start), 1)
    tail = losses[-min(len(losses), 50):]
    row.update(first_loss=round(losses[0], 4), final_loss=round(sum(tail) / len(tail), 4),
               loss_curve=curve, checkpoint=osp.relpath(ckpt, REPO), hparams=peer.hparams,
               views=[{k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()}
                      for s in specs],
               lightly_transforms=_describe(transform))
    if peer.diagnostics:
        row['diagnostics'] = peer.diagnostics
    loader = stream = None  # the loader workers end before the evaluation
    if not args.skip_eval:
        t0 = time.time()
        with quiet_mmengine():
            # the evaluation protocol is fixed (seed 0: probe subset), whatever the training seed
            row.update(quality.evaluate(cfg, ckpt, preset['probe_train']))
        row['eval_seconds'] = round(time.time() - t0, 1)
    row['notes'] = peer.notes
    print(f"{who} {_short(row)}", flush=True)
    return row


def data_pipeline_ms(name: str, preset: dict, samples: int = 500) -> dict:
    """Milliseconds per training sample of each implementation's data pipeline alone (decode, views,
    augmentation; one process, no loader workers): where the end-to-end images/s differ while
    the training steps do not, the difference is here."""
    from lightly.data import LightlyDataset
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    cfg = method_cfg(name, preset)
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.pop('_scope_', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ours = DATASETS.build(ds_cfg)
    root, files = training_files(cfg)
    theirs = LightlyDataset(root, transform=PEERS[name](cfg).transform()[0], filenames=files)
    out = {}
    for impl, ds in ((OURS, ours), (f'lightly {_lightly_version()}', theirs)):
        _seed(0)
        ds[0]  # warm-up (file cache, lazy imports)
        t0 = time.perf_counter()
        for i in range(samples):
            ds[i % len(ds)]
        out[impl] = round((time.perf_counter() - t0) / samples * 1e3, 3)
    return out


def run_ours(name: str, args, preset: dict) -> dict:
    """Our side: quality.py's run_method (train + evaluate) for the same preset and budget."""
    if args.skip_eval and not args.dry_run:
        raise ValueError('--ours trains and evaluates through quality.run_method; '
                         'drop --skip-eval')
    qargs = argparse.Namespace(dry_run=args.dry_run, only_random=False, seed=args.seed,
                               work_dir=osp.join(args.work_dir, 'ours'))
    row = quality.run_method(name, quality.METHODS[name], qargs, preset)
    row.update(method=name, implementation=OURS)
    curve = _logged_losses(osp.join(qargs.work_dir, name))
    if curve:
        row.update(first_loss=curve[0][1], final_loss=curve[-1][1], loss_curve=curve)
    return row


def _logged_losses(work: str) -> List[list]:
    """[iteration, loss] as mmengine logged them (means over the logging interval), from the
    newest ``vis_data/scalars.json`` under ``work``."""
    import glob
    files = sorted(glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json')))
    if not files:
        return []
    curve = []
    with open(files[-1]) as f:
        for line in f:
            rec = json.loads(line)
            if 'loss' in rec and 'iter' in rec:
                curve.append([rec['iter'], round(float(rec['loss']), 4)])
    return curve


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def _describe(transform) -> List[str]:
    views = getattr(transform, 'transforms', [transform])
    out = []
    for v in views:
        inner = getattr(v, 'transform', v)
        out.append(' '.join(repr(inner).split()))
    return out


def _short(row: dict) -> dict:
    keys = ('iterations', 'train_seconds', 'images_per_second', 'loop_images_per_second',
            'first_loss', 'final_loss', 'k20_top1', 'k200_top1', 'linear_top1', 'diagnostics')
    return {k: row[k] for k in keys if k in row}


def _lightly_version() -> str:
    try:
        from importlib.metadata import version
        return version('lightly')
    except Exception:  # pragma: no cover
        return '?'


# ------------------------------------------------------------------------------- report
def markdown(report: dict) -> str:
    if 'data_pipeline_ms_per_sample' in report:
        lines = [f"## Data pipelines alone: mmssl_ext vs lightly ({report['date']})", '',
                 *rep.provenance(report)[:2],
                 'Milliseconds per training sample (decode, views, augmentation), one process, no '
                 'loader workers, 500 samples of the config\'s training images.', '',
                 '| method | ours (ms / sample) | lightly (ms / sample) | ours / lightly |',
                 '|---|---:|---:|---:|']
        for name, r in report['data_pipeline_ms_per_sample'].items():
            o, t = r[OURS], next(v for k, v in r.items() if k != OURS)
            lines.append(f'| {name} | {o:.2f} | {t:.2f} | {o / t:.2f} |')
        return '\n'.join(lines) + '\n'
    data = ('all 60k' if report['full_train'] else
            'the first 10k; configs/mocov2 (no `indices`): all 60k')
    lines = [f"## Peer comparison: mmssl_ext vs lightly, preset `{report['preset']}` "
             f"({report['date']})", '',
             *rep.provenance(report)[:2],
             f"Budget: {report['budget']:,} backbone-equivalent 32 px images per method and "
             f"implementation; batch 64; the same ResNet-18 (w32) module; training images as "
             f"each method's config ({data}); "
             f"kNN 60k -> 10k, linear probe on {report['probe_train']} training images; "
             f"lightly {report['lightly']}.  images / s: source images per training second "
             '(evaluation excluded); `vs ours`: lightly / ours.  final loss: mean of the last '
             '50 iterations (lightly), the last logged interval mean (ours).', '',
             '| method | implementation | kNN k=20 | kNN k=200 | linear | images / s | vs ours '
             '| iterations x batch | backbone images / sample | final loss | notes |',
             '|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|']
    if report.get('random_init'):
        r = report['random_init']
        lines.append(f"| random init (no training) | - | {r['k20_top1']:.2f} | "
                     f"{r['k200_top1']:.2f} | {r['linear_top1']:.2f} | | | | | | |")
    ours = {r['method']: r for r in report['rows'] if r.get('implementation') == OURS}
    for r in report['rows']:
        name, impl = r['method'], r.get('implementation', '?')
        if 'error' in r:
            lines.append(f"| {name} | {impl} | error: {r['error'].splitlines()[-1][:120]} "
                         '| | | | | | | | |')
            continue
        acc = ' | '.join(f'{r[k]:.2f}' if k in r else '-'
                         for k in ('k20_top1', 'k200_top1', 'linear_top1'))
        ips = r.get('images_per_second', '-')
        vs = '-'
        if impl != OURS and name in ours and ours[name].get('images_per_second') and \
                isinstance(ips, (int, float)):
            vs = f"{ips / ours[name]['images_per_second']:.2f}x"
        short = []
        if r.get('diagnostics'):
            d = r['diagnostics']
            short.append(f"teacher entropy {d['teacher_entropy']}, batch-mean entropy "
                         f"{d['teacher_batch_mean_entropy']} (/ log K)")
        if r.get('notes'):
            short.append(f"{len(r['notes'])} differences, below")
        lines.append(f"| {name} | {impl} | {acc} | {ips} | {vs} | "
                     f"{r.get('iterations', '-')} x {r.get('batch_size', '-')} | "
                     f"{r.get('images_per_sample', '-')} | {r.get('final_loss', '-')} | "
                     f"{'; '.join(short)} |")
    lightly_rows = [r for r in report['rows'] if r.get('implementation') != OURS]
    if any(r.get('hparams') for r in lightly_rows):
        lines += ['', '### lightly side: hyper-parameters (read from our configs)', '']
        for r in lightly_rows:
            if r.get('hparams'):
                hp = '; '.join(f'{k}: {v}' for k, v in r['hparams'].items())
                lines.append(f"- **{r['method']}** ({r['config']}): {hp}")
    if any(r.get('notes') for r in lightly_rows):
        lines += ['', '### What differs between the implementations', '',
                  'Common to all: torch loop vs mmengine Runner; torchvision vs mmcv / mmpretrain '
                  'transforms (same parameters); schedule steps offset by one in the warm-up. '
                  'Per method:', '']
        for r in lightly_rows:
            for n in r.get('notes', []):
                lines.append(f"- {r['method']}: {n}")
    return '\n'.join(lines) + '\n'


def result_name(args: argparse.Namespace, device: str) -> str:
    """``<methods>_<device>[-<preset>-preset]-<budget>[-lightly-only]_seed<N>`` (``all`` for
    every peer method), or ``data-pipelines[-<methods>]_<device>``: what the results file of
    ``args`` (:func:`parse_args`) run on ``device`` holds."""
    device = 'gpu' if device == 'cuda' else device
    setting = [device, f'{args.preset}-preset' if args.preset != device else '']
    every = set(PEER_METHODS) <= set(args.methods)
    if args.data_only:
        return rep.result_name('-'.join(['data-pipelines'] + ([] if every else args.methods)),
                               *setting)
    return rep.result_name(['all'] if every else args.methods, *setting,
                           rep.count(args.settings['budget']),
                           '' if args.ours else 'lightly-only', seed=args.seed)


def _write(report: dict, args) -> None:
    rep.write(report, markdown(report), 'peers', args.tag, args.out)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line; ``args.methods`` without ``all``, ``args.settings``: the preset with
    the flags' budget, threads and workers."""
    p = argparse.ArgumentParser(
        prog='python -m benchmarks.peers',
        description='Peer comparison in the same harness: lightly against ours, same data, '
        'backbone, budget and evaluation')
    p.add_argument('--preset', choices=sorted(quality.PRESETS), default='cpu',
                   help="quality.py's preset: data (10k / 60k), probe size, threads, workers")
    p.add_argument('--methods', nargs='+', choices=list(PEER_METHODS) + ['all'],
                   default=list(PEER_METHODS))
    p.add_argument('--budget', type=int, help="backbone-equivalent images (default: preset's)")
    p.add_argument('--ours', action='store_true',
                   help='also train + evaluate our implementation (quality.run_method)')
    p.add_argument('--random-init', action='store_true',
                   help='also evaluate the untrained backbone (a reference row)')
    p.add_argument('--skip-eval', action='store_true', help='train only (smoke test)')
    p.add_argument('--data-only', action='store_true',
                   help='no training: ms per sample of each data pipeline alone, one process')
    p.add_argument('--dry-run', action='store_true', help='only measure and print iterations')
    p.add_argument('--no-check-budget', action='store_true',
                   help="skip measuring our model's backbone images per sample")
    p.add_argument('--threads', type=int, help="torch threads (default: the preset's)")
    p.add_argument('--workers', type=int, help="data loader workers (default: the preset's)")
    p.add_argument('--seed', type=int, default=0,
                   help='training seed of both implementations (the evaluation always uses 0)')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'benchmarks', 'peers'))
    p.add_argument('--out', default=rep.RESULTS)
    p.add_argument('--tag', help='results file name peers_<tag> (default: what it measures, '
                   'see result_name)')
    args = p.parse_args(argv)
    preset = dict(quality.PRESETS[args.preset])
    if args.budget:
        preset['budget'] = args.budget
    for key in ('threads', 'workers'):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    args.methods = list(PEER_METHODS) if 'all' in args.methods else list(args.methods)
    args.settings = preset
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    preset, methods = args.settings, args.methods
    torch.set_num_threads(preset['threads'])
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    args.tag = args.tag or result_name(args, device.type)
    import mmssl_ext  # noqa: F401
    report = rep.new_report('benchmarks.peers', argv, preset=args.preset,
                            budget=preset['budget'], full_train=preset['full_train'],
                            probe_train=preset['probe_train'], threads=preset['threads'],
                            workers=preset['workers'], lightly=_lightly_version(),
                            machine=rep.machine(preset['threads'], device.type), rows=[])
    if args.data_only:
        report['data_pipeline_ms_per_sample'] = {
            name: data_pipeline_ms(name, preset) for name in methods}
        print(json.dumps(report['data_pipeline_ms_per_sample'], indent=1))
        _write(report, args)
        return report
    if args.random_init and not args.dry_run:
        with quiet_mmengine():
            report['random_init'] = quality.evaluate(method_cfg('pirl', preset), 'random',
                                                     preset['probe_train'])
    for name in methods:
        runs = ([('ours', lambda: run_ours(name, args, preset))] if args.ours else []) + \
            [('lightly', lambda: run_lightly(name, args, preset, device))]
        for impl, fn in runs:
            try:
                row = fn()
            except Exception:  # one method's failure must not lose the others' results
                tb = traceback.format_exc()
                print(tb, flush=True)
                row = dict(method=name, config=quality.METHODS[name],
                           implementation=OURS if impl == 'ours' else
                           f'lightly {_lightly_version()}', error=tb)
            report['rows'].append(row)
            if not args.dry_run:
                _write(report, args)
    if not args.dry_run:
        _write(report, args)
        print(markdown(report))
    return report
