"""PIRL's ablations at our scale (Misra & van der Maaten 2020, Figs. 8-10): feature quality
against the loss weight lambda, against the number of memory-bank negatives, and against the
number of jigsaw permutations for PIRL and for the Jigsaw pretext task.

Every point is one run of :func:`benchmarks.quality.run_method` (the quality benchmark's
training and evaluation): the Fashion-MNIST config of the method (``configs/pirl/
pirl_r18-w32_1xb64-3000it_fmnist.py``, ``configs/jigsaw/jigsaw_r18-w32_1xb64-3000it_fmnist.py``)
with the one setting changed, trained for ``--budget`` backbone-equivalent 32 px images (the
schedule rescaled to that length), then weighted kNN (k=20, k=200, T=0.07) of the last stage on
``--knn-train`` training images against the 10k test images and a linear probe on
``--probe-train`` training images.  The paper measures ImageNet linear top-1 (Figs. 8, 10) and
VOC07 SVM mAP (Fig. 9); here every panel plots the linear-probe top-1 and kNN k=20.

    .venv/bin/python -m benchmarks.pirl_ablations --budget 20000
    .venv/bin/python -m benchmarks.pirl_ablations --sweeps lambda --budget 100000

Writes ``benchmarks/results/pirl_ablations_<sweeps>_<device>-<budget>_seed<N>.json``, ``.md``
and ``.png`` (three panels as the paper's figures).
"""
import argparse
import contextlib
import copy
import functools
import os.path as osp
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch

from benchmarks import quality
from benchmarks import report as rep
from benchmarks.report import REPO

#: Fig. 8: lambda from 0 (only the image-image term) to 1 (only the image-transform term)
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Fig. 10: negatives per sample drawn from the 10k-entry memory bank
NEGATIVES = (256, 1024, 4096, 8192)
#: Fig. 9: permutation-set sizes; Jigsaw classifies among them (a head output per
#: permutation), PIRL only samples them (up to all 9! = 362880)
PERMUTATIONS = {'pirl': (10, 100, 1000, 10000, 362880), 'jigsaw': (10, 100, 1000, 2000)}
SWEEPS = ('lambda', 'negatives', 'permutations')
METRICS = ('linear_top1', 'k20_top1')
DEFAULTS = dict(budget=20_000, knn_train=10_000, probe_train=5_000, workers=2, threads=2)


def jigsaw_keys(cfg, prefix: str = '') -> List[str]:
    """Dotted paths of every ``JigsawPatches`` transform's ``num_permutations`` in ``cfg``
    (lists indexed), for ``Config.merge_from_dict``."""
    keys = []
    items = (cfg.items() if isinstance(cfg, dict) else
             enumerate(cfg) if isinstance(cfg, (list, tuple)) else ())
    for key, value in items:
        path = f'{prefix}{key}'
        if isinstance(value, dict) and value.get('type') == 'JigsawPatches':
            keys.append(f'{path}.num_permutations')
        keys += jigsaw_keys(value, path + '.')
    return keys


def points(sweeps: Sequence[str], lambdas: Sequence[float] = LAMBDAS,
           negatives: Sequence[int] = NEGATIVES,
           permutations: Optional[Dict[str, Sequence[int]]] = None) -> List[dict]:
    """One dict per training run, sweeps in the order given: ``sweep``, ``method``, ``value``,
    ``name`` and the config ``overrides`` that make the setting."""
    unknown = set(sweeps) - set(SWEEPS)
    if unknown:
        raise ValueError(f'unknown sweep(s) {sorted(unknown)}; choose from {list(SWEEPS)}')
    permutations = PERMUTATIONS if permutations is None else permutations
    out = []
    for sweep in dict.fromkeys(sweeps):  # in the order given
        if sweep == 'lambda':
            out += [dict(sweep='lambda', method='pirl', value=v, name=f'pirl-lambda{v:g}',
                         overrides={'model.loss_lambda': float(v)}) for v in lambdas]
        elif sweep == 'negatives':
            out += [dict(sweep='negatives', method='pirl', value=n, name=f'pirl-negatives{n}',
                         overrides={'model.memory_bank.num_negatives': int(n)})
                    for n in negatives]
        else:
            out += permutation_points(permutations)
    return out


def permutation_points(permutations: Dict[str, Sequence[int]]) -> List[dict]:
    """The permutation sweep: every ``JigsawPatches`` of the method's config set to ``n``
    permutations (and Jigsaw's classifier to ``n`` outputs)."""
    out = []
    for method, values in permutations.items():
        cfg = method_config(method)
        keys = jigsaw_keys(cfg.train_dataloader.to_dict(), 'train_dataloader.')
        if not keys:
            raise ValueError(f'{quality.METHODS[method]} has no JigsawPatches transform')
        for n in values:
            over = {k: int(n) for k in keys}
            if method == 'jigsaw':  # the classifier has one output per permutation
                over['model.head.num_classes'] = int(n)
            out.append(dict(sweep='permutations', method=method, value=n,
                            name=f'{method}-permutations{n}', overrides=over))
    return out


@functools.lru_cache(maxsize=None)
def method_config(method: str):
    """The method's Fashion-MNIST config as shipped (loaded once; callers copy it)."""
    from mmssl_ext.utils.config import load_config
    return load_config(osp.join(REPO, quality.METHODS[method]))


def is_default(method: str, overrides: dict) -> bool:
    """Whether ``overrides`` leave the method's config as it is (the main-job setting, which
    every sweep contains: trained once, its numbers reused)."""
    cfg = method_config(method)
    changed = copy.deepcopy(cfg)
    changed.merge_from_dict(overrides)
    return changed.to_dict() == cfg.to_dict()


@contextlib.contextmanager
def overrides_of(name: str, overrides: dict) -> Iterator[None]:
    """``benchmarks.quality.run_method`` applies ``quality.OVERRIDES[name]``: the point's
    settings, for the duration of its run."""
    if name in quality.OVERRIDES:
        raise ValueError(f'{name!r} is a row of benchmarks.quality; name the point otherwise')
    quality.OVERRIDES[name] = overrides
    try:
        yield
    finally:
        del quality.OVERRIDES[name]


def run(sweeps: Sequence[str] = SWEEPS, budget: int = DEFAULTS['budget'],
        knn_train: Optional[int] = DEFAULTS['knn_train'],
        probe_train: int = DEFAULTS['probe_train'], workers: int = DEFAULTS['workers'],
        batch_size: Optional[int] = None, seed: Optional[int] = None,
        work_dir: str = 'work_dirs/benchmarks/pirl_ablations',
        base_overrides: Optional[Dict[str, dict]] = None, report: Optional[dict] = None,
        on_point: Optional[Callable[[dict], None]] = None, **point_kw) -> dict:
    """Train and evaluate every point; ``base_overrides``: ``{method: {key: value}}`` applied
    to every run of that method (data root, ...); ``on_point(report)`` after each point.
    Returns the report with ``points``."""
    base_overrides = base_overrides or {}
    preset = dict(budget=budget, full_train=False, probe_train=probe_train, workers=workers)
    args = argparse.Namespace(dry_run=False, only_random=False, work_dir=work_dir, seed=seed,
                              batch_size=batch_size)
    report = report if report is not None else {}
    report.setdefault('points', [])
    defaults: Dict[str, dict] = {}  # method -> the point that trained its config unchanged
    for point in points(sweeps, **point_kw):
        method = point['method']
        if is_default(method, point['overrides']) and method in defaults:
            row = dict(defaults[method], reused_from=defaults[method]['name'])
        else:
            over = dict(base_overrides.get(method, {}))
            if knn_train:  # the kNN memory: the first knn_train training images
                over['knn_eval.train_dataloader.dataset.indices'] = int(knn_train)
            over.update(point['overrides'])
            with overrides_of(point['name'], over):
                row = quality.run_method(point['name'], quality.METHODS[method], args, preset)
            row = {k: v for k, v in row.items() if k not in ('overrides', 'config')}
            if is_default(method, point['overrides']):
                defaults[method] = dict(row, name=point['name'])
        report['points'].append(dict(point, **{k: v for k, v in row.items() if k != 'name'}))
        if on_point is not None:
            on_point(report)
    return report


def plot(report: dict, path: str) -> str:
    """Three panels as the paper's Figs. 8-10: accuracy against lambda, against the number of
    permutations (PIRL and Jigsaw, log x) and against the number of negatives (log x)."""
    from mmssl_ext.evaluation.plots import new_figure, save_figure, series_style
    panels = [s for s in ('lambda', 'permutations', 'negatives')
              if any(p['sweep'] == s for p in report['points'])]
    fig = new_figure((4.2 * max(1, len(panels)), 3.6))
    labels = {'lambda': 'lambda (weight of the image-transform term)',
              'permutations': 'number of jigsaw permutations',
              'negatives': 'number of negatives'}
    for i, sweep in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for m, method in enumerate(dict.fromkeys(p['method'] for p in report['points']
                                                 if p['sweep'] == sweep)):
            pts = sorted((p for p in report['points']
                          if p['sweep'] == sweep and p['method'] == method),
                         key=lambda p: p['value'])
            for j, metric in enumerate(METRICS):
                ys = [p.get(metric) for p in pts]
                if any(y is None for y in ys):
                    continue
                ax.plot([p['value'] for p in pts], ys, series_style(j), marker='os'[j % 2],
                        color=f'C{m}', label=f'{method} ({metric})')
        if sweep != 'lambda':  # log x, a tick at every measured value
            values = sorted({p['value'] for p in report['points'] if p['sweep'] == sweep})
            ax.set_xscale('log')
            ax.minorticks_off()
            ax.set_xticks(values)
            ax.set_xticklabels([f'{v:g}' for v in values], fontsize='small', rotation=30)
        ax.set_xlabel(labels[sweep])
        ax.set_ylabel('top-1 accuracy (%)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize='x-small')
    fig.suptitle(f"PIRL ablations, {report.get('budget', '?'):,} backbone images per point")
    return save_figure(fig, path)


def markdown(report: dict) -> str:
    lines = [f"## PIRL ablations ({report['date']})", '', *rep.provenance(report),
             f"Budget: {report['budget']:,} backbone-equivalent 32 px images per point; kNN "
             f"memory {report['knn_train'] or 'all'} training images, linear probe "
             f"{report['probe_train']}, test: the 10k test images.", '',
             '| sweep | method | value | iterations | kNN k=20 | kNN k=200 | linear |',
             '|---|---|---:|---:|---:|---:|---:|']
    for p in report['points']:
        lines.append(f"| {p['sweep']} | {p['method']} | {p['value']:g} | "
                     f"{p.get('iterations', '-')} | {p.get('k20_top1', '-')} | "
                     f"{p.get('k200_top1', '-')} | {p.get('linear_top1', '-')} |")
    return '\n'.join(lines) + '\n'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m benchmarks.pirl_ablations',
                                description=__doc__.splitlines()[0])
    p.add_argument('--sweeps', nargs='+', choices=SWEEPS, default=list(SWEEPS))
    p.add_argument('--budget', type=int, default=DEFAULTS['budget'],
                   help='backbone-equivalent 32 px images per point (default %(default)s)')
    p.add_argument('--knn-train', type=int, default=DEFAULTS['knn_train'],
                   help='kNN memory: the first N training images (0: all 60k; default '
                        '%(default)s)')
    p.add_argument('--probe-train', type=int, default=DEFAULTS['probe_train'],
                   help='linear-probe training images (default %(default)s)')
    p.add_argument('--workers', type=int, default=DEFAULTS['workers'])
    p.add_argument('--batch-size', type=int, help="samples per iteration (default: the "
                   "config's 64), the lr scaled linearly")
    p.add_argument('--seed', type=int, help="training seed (default: the configs')")
    p.add_argument('--work-dir', default='work_dirs/benchmarks/pirl_ablations')
    p.add_argument('--out', default=rep.RESULTS)
    return p.parse_args(argv)


def result_name(args: argparse.Namespace) -> str:
    """``<sweeps>_cpu-<budget>_seed<N>``: what the files of ``args`` hold."""
    device = 'gpu' if torch.cuda.is_available() else 'cpu'
    seed = args.seed if args.seed is not None else quality.config_seed(['pirl', 'jigsaw'])
    return rep.result_name(list(args.sweeps), device, rep.count(args.budget),
                           f'b{args.batch_size}' if args.batch_size else '', seed=seed)


def main(argv: Optional[List[str]] = None,
         base_overrides: Optional[Dict[str, dict]] = None, **point_kw) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(DEFAULTS['threads'])
    import mmssl_ext  # noqa: F401
    report = rep.new_report('benchmarks.pirl_ablations', argv, budget=args.budget,
                            knn_train=args.knn_train, probe_train=args.probe_train,
                            machine=rep.machine(DEFAULTS['threads']))
    name = result_name(args)

    def write(rep_: dict) -> None:  # after every point: a long sweep keeps what it measured
        base = rep.write(rep_, markdown(rep_), 'pirl_ablations', name, args.out)
        rep_['files'] = dict(json=base + '.json', md=base + '.md',
                             png=plot(rep_, base + '.png'))

    run(args.sweeps, args.budget, args.knn_train, args.probe_train, args.workers,
        args.batch_size, args.seed, args.work_dir, base_overrides, report, write, **point_kw)
    print(markdown(report))
    return report


if __name__ == '__main__':
    main()
