"""Collapse, measured: the claims about what keeps non-contrastive methods from collapsing, tested
on Fashion-MNIST with :class:`~mmssl_ext.engine.hooks.CollapseMonitorHook` watching.

Rows (each the method's Fashion-MNIST config with one change; the same iterations, batch size,
schedule shape and seed for all):

* ``byol`` / ``byol-no-bn``: BYOL with and without BatchNorm in its projector and predictor
  (mmpretrain's ``NonLinearNeck`` with ``norm_cfg`` an identity; the target network is a copy
  of the online one, so it has none either);
* ``dino`` / ``dino-no-centering`` / ``dino-no-sharpening`` / ``dino-neither``: DINO with its
  centre frozen at 0 (``center_momentum=1``) and / or the teacher temperature equal to the
  student's (0.1, no sharpening);
* ``simsiam`` / ``simsiam-no-stopgrad``: SimSiam with and without the stop-gradient on the
  target branch (mmpretrain's ``LatentPredictHead`` without its ``detach``).

Every run logs the monitor's measures (per-dimension std of the L2-normalised embedding times
sqrt(d), effective rank, the output entropy and teacher / student KL for DINO) every
``iters / 15`` iterations on 256 fixed training images, and ends with
:class:`~mmssl_ext.engine.hooks.OnlineLinearProbeHook`'s top-1 (logistic regression on pooled
backbone features of ``--probe-train`` training / ``--probe-val`` test images).  A run that stops
(a NaN loss) keeps the curves up to there.  The monitor's and the probe's wall time are
reported against the training step's.

    .venv/bin/python -m benchmarks.collapse --iters 300          # all rows, 2 CPU cores
    .venv/bin/python -m benchmarks.collapse --rows dino dino-no-centering --iters 600

Writes ``benchmarks/results/collapse_<rows>_<device>-<iters>it_seed<N>.json`` / ``.md`` / ``.png``
(the figure: the measures over the iterations, one line per row).
"""
import argparse
import copy
import math
import os
import os.path as osp
import time
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from benchmarks import quality
from benchmarks import report as rep
from benchmarks.report import REPO

NO_NORM = dict(type='CollapseBenchNoNorm')
#: name -> (method of benchmarks.quality.METHODS, config overrides, what changed)
ROWS: Dict[str, tuple] = {
    'byol': ('byol', {}, 'recipe (BN in projector and predictor)'),
    'byol-no-bn': ('byol', {'model.neck.norm_cfg': NO_NORM,
                            'model.head.predictor.norm_cfg': NO_NORM},
                   'no BN in projector / predictor'),
    'dino': ('dino', {}, 'recipe (centring, tau_t 0.04)'),
    'dino-no-centering': ('dino', {'model.loss.center_momentum': 1.0}, 'centre fixed at 0'),
    'dino-no-sharpening': ('dino', {'model.loss.teacher_temp': 0.1,
                                    'model.loss.warmup_teacher_temp': 0.1},
                           'tau_t = tau_s = 0.1'),
    'dino-neither': ('dino', {'model.loss.center_momentum': 1.0, 'model.loss.teacher_temp': 0.1,
                              'model.loss.warmup_teacher_temp': 0.1},
                     'no centring, no sharpening'),
    'simsiam': ('simsiam', {}, 'recipe (stop-gradient)'),
    'simsiam-no-stopgrad': ('simsiam', {'model.head.type': 'CollapseBenchNoStopGradHead'},
                            'gradient through the target branch'),
}
#: the monitor's measures in the table and the figure
SHOWN = ('embedding_std_ratio', 'effective_rank', 'teacher_entropy', 'entropy', 'kl')


def register_variants() -> None:
    """The two modules the rows need, registered in mmpretrain's ``MODELS`` (once)."""
    from mmpretrain.models.heads import LatentPredictHead
    from mmssl_ext.registry import MODELS

    class CollapseBenchNoNorm(nn.Identity):
        """``norm_cfg`` that builds no normalisation (arguments ignored)."""

    class CollapseBenchNoStopGradHead(LatentPredictHead):
        """``LatentPredictHead`` whose target keeps its gradient (no stop-gradient)."""

        def loss(self, input, target):
            return self.loss_module(self.predictor([input])[0], target)

    MODELS.register_module(module=CollapseBenchNoNorm, force=True)
    MODELS.register_module(module=CollapseBenchNoStopGradHead, force=True)


def _probe_loader(loader: dict, n: int, workers: int) -> dict:
    loader = copy.deepcopy(loader)
    loader.dataset.indices = n
    loader.update(num_workers=workers, persistent_workers=False)
    return loader


def _timed(obj, name: str, seconds: List[float]) -> None:
    """Wrap ``obj.name`` to append its wall time to ``seconds``."""
    fn = getattr(obj, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)
    setattr(obj, name, timed)


def build_cfg(name: str, args):
    """The row's config: the method's config, the row's change, the shared budget, the hooks."""
    from mmssl_ext.utils.config import load_config
    method, overrides, _ = ROWS[name]
    cfg = load_config(osp.join(REPO, quality.METHODS[method]))
    cfg.merge_from_dict(copy.deepcopy(overrides))
    cfg.merge_from_dict(quality.OVERRIDES.get(method, {}))
    cfg.randomness = dict(cfg.get('randomness', {}), seed=args.seed)
    if args.data_root:
        cfg.train_dataloader.dataset.data_root = args.data_root
        for split in ('train', 'val'):
            cfg.knn_eval[f'{split}_dataloader'].dataset.data_root = args.data_root
    if args.train_images:
        cfg.train_dataloader.dataset.indices = args.train_images
    if args.batch_size:
        cfg.train_dataloader.batch_size = args.batch_size
    quality.apply_data(cfg, full_train=False, workers=args.workers)
    old_iters = cfg.train_cfg.max_iters
    quality.rescale_schedule(cfg, args.iters)
    if cfg.model.get('freeze_last_layer_iters'):  # DINO: the same share of the schedule
        cfg.model.freeze_last_layer_iters = round(
            cfg.model.freeze_last_layer_iters * args.iters / old_iters)
    interval = max(1, args.iters // 15)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='CollapseMonitorHook', interval=interval, num_samples=args.probe_samples),
        dict(type='OnlineLinearProbeHook', interval=args.iters, by_epoch=False,
             train_dataloader=_probe_loader(cfg.knn_eval.train_dataloader, args.probe_train,
                                            args.workers),
             val_dataloader=_probe_loader(cfg.knn_eval.val_dataloader, args.probe_val,
                                          args.workers))]
    cfg.work_dir = osp.join(args.work_dir, name)
    cfg.experiment_name = f'collapse_{name}'
    return cfg


def run_row(name: str, args) -> dict:
    from mmssl_ext.cli import train as train_api
    from mmssl_ext.engine.hooks import CollapseMonitorHook, OnlineLinearProbeHook
    cfg = build_cfg(name, args)
    os.makedirs(args.work_dir, exist_ok=True)
    dumped = osp.join(args.work_dir, f'{name}.py')
    cfg.dump(dumped)
    targs = train_api.parse_args([dumped, '--work-dir', cfg.work_dir])
    runner = train_api.build_runner(train_api.merge_args(cfg, targs))
    monitor = next(h for h in runner.hooks if isinstance(h, CollapseMonitorHook))
    probe = next(h for h in runner.hooks if isinstance(h, OnlineLinearProbeHook))
    check_s: List[float] = []
    probe_s: List[float] = []
    _timed(monitor, 'measure', check_s)
    _timed(probe, 'evaluate', probe_s)
    method, overrides, change = ROWS[name]
    row = dict(method=method, change=change, overrides=overrides, iterations=args.iters,
               batch_size=cfg.train_dataloader.batch_size, monitor_interval=monitor.interval)
    start = time.perf_counter()
    try:
        runner.train()
        row['stopped'] = None
    except Exception as e:  # a diverged run (NaN loss) still has its curves
        row['stopped'] = f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'
    wall = time.perf_counter() - start
    row['iterations_done'] = int(runner.iter)
    row['train_seconds'] = round(wall, 1)
    steps = max(1, runner.iter)
    step_s = (wall - sum(check_s) - sum(probe_s)) / steps
    row['seconds_per_step'] = round(step_s, 4)
    later = check_s[1:] or check_s  # the first check also draws the probe set
    row['first_check_seconds'] = round(check_s[0], 3) if check_s else None
    row['seconds_per_check'] = round(sum(later) / max(1, len(later)), 4)
    row['check_share_of_step'] = round(row['seconds_per_check'] / step_s, 4)
    row['monitor_overhead'] = round(sum(check_s[1:]) / (step_s * steps), 4)
    row['probe_seconds'] = round(sum(probe_s) / max(1, len(probe_s)), 2) if probe_s else None
    row['history'] = monitor.history
    row['final'] = monitor.history[-1] if monitor.history else {}
    row['linear_top1'] = probe.last_results.get('top1')
    head = getattr(getattr(runner.model, 'dino_loss', None), 'out_channels', None)
    row['ln_k'] = round(math.log(head), 4) if head else None
    print(f'[{name}] {dict((k, v) for k, v in row.items() if k != "history")}', flush=True)
    return row


def reading(row: dict) -> str:
    """A one-word reading of the final measures (rule in benchmarks/README.md)."""
    final = row['final']
    if not final:
        return 'no checks'
    if row.get('ln_k') and 'teacher_entropy' in final:
        h = final['teacher_entropy'] / row['ln_k']
        if h > 0.9:
            return 'uniform collapse'
        if h < 0.1:
            return 'one-dimension collapse'
    if final['effective_rank'] < 2 or final['embedding_std_ratio'] < 0.1:
        return 'collapsed'
    return 'healthy'


def markdown(report: dict) -> str:
    lines = [f"## Collapse, {report['iterations']} iterations per row ({report['date']})", '',
             *rep.provenance(report)[:2], '',
             '| row | change | std x sqrt(d) | eff. rank | entropy / ln K (teacher) | KL | '
             'linear top-1 | reading | stopped |', '|---|---|---|---|---|---|---|---|---|']
    for name, row in report['rows'].items():
        f = row['final']
        ent = (f"{f['teacher_entropy'] / row['ln_k']:.3f}"
               if row.get('ln_k') and 'teacher_entropy' in f else '-')
        kl = f"{f['kl']:.3g}" if 'kl' in f else '-'
        top1 = '-' if row['linear_top1'] is None else f"{row['linear_top1']:.1f}"
        lines.append(
            f"| {name} | {row['change']} | {f.get('embedding_std_ratio', float('nan')):.3f} | "
            f"{f.get('effective_rank', float('nan')):.1f} | {ent} | {kl} | {top1} | "
            f"{reading(row)} | {row['stopped'] or '-'} |")
    lines += ['', '| row | s / step | first check s | s / check | check / step | '
              'monitor overhead | probe s |', '|---|---|---|---|---|---|---|']
    for name, row in report['rows'].items():
        lines.append(f"| {name} | {row['seconds_per_step']} | {row['first_check_seconds']} | "
                     f"{row['seconds_per_check']} | {row['check_share_of_step']:.2f} | "
                     f"{100 * row['monitor_overhead']:.1f} % | {row['probe_seconds']} |")
    if report.get('figure'):
        lines += ['', f"![the monitor's curves]({osp.basename(report['figure'])})"]
    return '\n'.join(lines) + '\n'


def plot(report: dict, path: str) -> str:
    from mmssl_ext.evaluation.plots import new_figure, save_figure, series_style
    fig = new_figure(figsize=(11, 7.5))
    keys = ('embedding_std_ratio', 'effective_rank', 'teacher_entropy', 'kl')
    titles = ('std of L2-normalised embedding x sqrt(d)', 'effective rank (Roy & Vetterli)',
              'DINO teacher entropy / ln K', 'DINO KL(teacher || student)')
    axes = [fig.add_subplot(2, 2, i + 1) for i in range(4)]
    for i, (name, row) in enumerate(report['rows'].items()):
        hist = row['history']
        for ax, key in zip(axes, keys):
            pts = [(h['step'], h[key]) for h in hist if key in h]
            if not pts:
                continue
            xs, ys = zip(*pts)
            if key == 'teacher_entropy':
                ys = [y / row['ln_k'] for y in ys]
            ax.plot(xs, ys, series_style(i), label=name, color=f'C{i}')
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('iteration', fontsize=8)
    axes[1].set_yscale('log')
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--rows', nargs='+', default=list(ROWS), choices=list(ROWS))
    p.add_argument('--iters', type=int, default=300, help='training iterations of every row')
    p.add_argument('--batch-size', type=int, default=None, help='default: the configs\' (64)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--probe-samples', type=int, default=256, help="the monitor's probe set")
    p.add_argument('--probe-train', type=int, default=2000)
    p.add_argument('--probe-val', type=int, default=2000)
    p.add_argument('--train-images', type=int, default=None,
                   help="first N training images (default: the configs' subset)")
    p.add_argument('--data-root', default=None, help='another Fashion-MNIST-style tree')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'benchmark_collapse'))
    p.add_argument('--out', default=rep.RESULTS)
    p.add_argument('--tag', default=None, help='result file name instead of the default')
    args = p.parse_args(argv)
    if args.iters < 1:
        p.error(f'--iters must be >= 1, got {args.iters}')
    return args


def result_name(args) -> str:
    """What the run measures: the methods of its rows, the iterations, the seed."""
    methods = sorted({ROWS[r][0] for r in args.rows})
    return rep.result_name('+'.join(methods) + '-ablations', 'cpu', f'{args.iters}it',
                           seed=args.seed)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import mmssl_ext  # noqa: F401  (registers the hooks and models)
    register_variants()
    report = rep.new_report('benchmarks.collapse', argv, iterations=args.iters,
                            seed=args.seed, rows={})
    for name in args.rows:
        report['rows'][name] = run_row(name, args)
    name = args.tag or result_name(args)
    os.makedirs(args.out, exist_ok=True)
    report['figure'] = plot(report, osp.join(args.out, f'collapse_{name}.png'))
    base = rep.write(report, markdown(report), 'collapse', name, out=args.out)
    print(f'wrote {base}.json / .md / .png', flush=True)
    return report


if __name__ == '__main__':
    main()
