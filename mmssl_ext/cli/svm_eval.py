"""``tools/svm_eval.py CONFIG CKPT [CKPT ...]``: VOC07-style linear SVM mAP of every layer
(stem, res2..res5) of a ResNet-family backbone, and its low-shot variant.

The protocol of Goyal et al. (2019) as VISSL and mmselfsup run it (see
:mod:`mmssl_ext.evaluation.svm`).  The data come from the config's ``knn_eval`` section (the
analysis tools' data: train = SVM-train split, val = test split) or from labelled folders
(``--train-folder`` / ``--val-folder``); single-label sets become one-vs-rest problems, VOC's
multi-label targets are used as they are (``configs/transfer/svm/``).  An optional ``svm_eval``
section of the config gives defaults for ``costs``, ``pool_ops`` (``{stage: (kernel, stride,
padding)}``, VISSL's fixed pooling), ``max_dim``, ``k_values`` and ``samples``::

    python tools/svm_eval.py configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py \\
        pirl=work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth random \\
        --num-train 5000 --low-shot

writes ``svm_eval.json``, ``svm_eval.png`` (mAP per layer) and, with ``--low-shot``,
``svm_low_shot.png`` into ``--work-dir`` (default ``work_dirs/analysis/svm_eval``).
"""
import os.path as osp
from typing import List, Optional, Sequence

from mmssl_ext.cli.analysis_common import (build_split_loader, class_names, common_parser,
                                           load_analysis_config, load_model,
                                           parse_checkpoints, publish_figures,
                                           quiet_init_logs, write_json)
from mmssl_ext.cli.knn_eval import add_folder_args
from mmssl_ext.evaluation.layer_probe import (extract_stage_features, format_table,
                                              plot_layer_probe, select_stages)
from mmssl_ext.evaluation.svm import (COST_SELECTION, CROSS_VAL_FOLDS, LOW_SHOT_K,
                                      LOW_SHOT_SAMPLES, MAX_ITER, REFERENCE_COSTS,
                                      dataset_targets, format_low_shot_table, low_shot_svm,
                                      plot_low_shot, svm_map)

TOOL = 'svm_eval'
#: Goyal et al. resize every layer to about 9k dimensions
SVM_MAX_DIM = 9216


def run(config: str, checkpoints: Sequence[str], work_dir: Optional[str] = None,
        names: Optional[Sequence[str]] = None, stages: Optional[Sequence[str]] = None,
        max_dim: Optional[int] = None, num_train: Optional[int] = None,
        num_test: Optional[int] = None, costs: Optional[Sequence[float]] = None,
        folds: int = CROSS_VAL_FOLDS, max_iter: int = MAX_ITER, n_jobs: int = 1,
        full: bool = True, low_shot: bool = False,
        k_values: Optional[Sequence[int]] = None, samples: Optional[Sequence[int]] = None,
        seed: int = 0, cfg_options: Optional[dict] = None, progress: bool = True,
        train_folder: Optional[str] = None, val_folder: Optional[str] = None) -> dict:
    """SVM mAP (and low-shot mAP) of every layer of every checkpoint; write JSON and PNGs.

    Returns:
        ``dict(results={name: {'svm': {stage: mAP}}}, details, low_shot, files, ...)``.
    """
    if not (full or low_shot):
        raise ValueError('nothing to do: the full benchmark is off and --low-shot is not set')
    work_dir = work_dir or osp.join('work_dirs', 'analysis', TOOL)
    cfg, knn = load_analysis_config(config, cfg_options, train_folder, val_folder)
    defaults = cfg.get('svm_eval', None) or {}
    costs = tuple(costs or defaults.get('costs', REFERENCE_COSTS))
    max_dim = max_dim or defaults.get('max_dim', SVM_MAX_DIM)
    pool_ops = {k: tuple(v) for k, v in (defaults.get('pool_ops', None) or {}).items()}
    k_values = tuple(k_values or defaults.get('k_values', LOW_SHOT_K))
    samples = tuple(samples or defaults.get('samples', LOW_SHOT_SAMPLES))
    ckpts = parse_checkpoints(checkpoints, names)
    train_loader = build_split_loader(knn, 'train', num_train, seed)
    test_loader = build_split_loader(knn, 'val', num_test, seed)
    classes = class_names(train_loader)
    num_classes = len(classes) if classes else None
    train_t = dataset_targets(train_loader.dataset, num_classes)
    test_t = dataset_targets(test_loader.dataset, train_t.shape[1])
    results, details, low, layout, selected = {}, {}, {}, {}, None
    for name, path in ckpts:
        model = load_model(cfg, path, seed)
        selected = select_stages(model.backbone, stages)
        if progress:
            print(f'[{name}] extracting {len(train_t)} train and {len(test_t)} test features '
                  f'of {", ".join(selected)}')
        train_f, _, layout = extract_stage_features(model, train_loader, selected, max_dim,
                                                    progress, pool_ops)
        test_f, _, _ = extract_stage_features(model, test_loader, selected, max_dim, progress,
                                              pool_ops)
        results[name], details[name], low[name] = {'svm': {}}, {}, {}
        for stage in selected:
            if full:
                if progress:
                    print(f'[{name}] {stage}: {train_t.shape[1]} classes x {len(costs)} costs, '
                          f'{folds}-fold cross-validation')
                res = svm_map(train_f[stage].numpy(), train_t, test_f[stage].numpy(), test_t,
                              costs, folds, True, max_iter, n_jobs, classes)
                results[name]['svm'][stage] = res['map']
                details[name][stage] = res
            if low_shot:
                if progress:
                    print(f'[{name}] {stage}: low-shot k={list(k_values)}, samples '
                          f'{list(samples)}')
                low[name][stage] = low_shot_svm(train_f[stage].numpy(), train_t,
                                                test_f[stage].numpy(), test_t, k_values,
                                                samples, costs, True, max_iter, classes)
    files = dict(json=osp.join(work_dir, f'{TOOL}.json'))
    title = f'{len(train_t)} train / {len(test_t)} test images'
    if full:
        files['png'] = plot_layer_probe(results, selected, osp.join(work_dir, f'{TOOL}.png'),
                                        title=f'linear SVM per layer ({title})',
                                        ylabel='test mAP (%)')
    if low_shot:
        files['low_shot_png'] = plot_low_shot(low, osp.join(work_dir, 'svm_low_shot.png'),
                                              title=f'low-shot linear SVM ({title})')
    report = dict(
        tool=TOOL, config=config, checkpoints=dict(ckpts), stages=selected, layout=layout,
        classes=classes, num_train=len(train_t), num_test=len(test_t),
        protocol=dict(costs=list(costs), folds=folds, max_iter=max_iter, normalize='l2',
                      max_dim=max_dim, pool_ops=pool_ops, k_values=list(k_values),
                      samples=list(samples), seed=seed,
                      cost_selection=COST_SELECTION.format(folds=folds)),
        results=results if full else {}, details=details if full else {},
        low_shot=low if low_shot else {}, files=files)
    write_json(report, files['json'])
    publish_figures(cfg, work_dir, [p for k, p in files.items() if k != 'json'])
    return report


def main(argv: Optional[List[str]] = None) -> dict:
    p = common_parser(TOOL, 'VOC07-style linear SVM mAP per layer (and low-shot)')
    p.add_argument('--stages', nargs='+', help='layers to evaluate (default stem res2 .. res5)')
    p.add_argument('--max-dim', type=int,
                   help=f'pool each layer to s x s with C*s*s <= this (default: the config\'s '
                        f'svm_eval.max_dim, else {SVM_MAX_DIM}); svm_eval.pool_ops overrides it '
                        f'per layer')
    p.add_argument('--num-train', type=int, default=0,
                   help='seeded subset of the SVM-train split (default 0 = all)')
    p.add_argument('--num-test', type=int, default=0,
                   help='seeded subset of the test split (default 0 = all)')
    p.add_argument('--costs', type=float, nargs='+',
                   help='SVM costs (default: svm_eval.costs, else VISSL\'s 0.01 .. 1000)')
    p.add_argument('--folds', type=int, default=CROSS_VAL_FOLDS,
                   help=f'cross-validation folds of the cost choice (default {CROSS_VAL_FOLDS})')
    p.add_argument('--max-iter', type=int, default=MAX_ITER,
                   help=f'liblinear iterations (default {MAX_ITER})')
    p.add_argument('--n-jobs', type=int, default=1, help='classes trained in parallel threads')
    p.add_argument('--low-shot', action='store_true',
                   help='also run the low-shot benchmark (k samples per class)')
    p.add_argument('--low-shot-only', action='store_true',
                   help='run only the low-shot benchmark')
    p.add_argument('--k-values', type=int, nargs='+',
                   help=f'low-shot samples per class (default {list(LOW_SHOT_K)})')
    p.add_argument('--samples', type=int, nargs='+',
                   help=f'low-shot independent samples (seeds; default {list(LOW_SHOT_SAMPLES)})')
    add_folder_args(p)
    args = p.parse_args(argv)
    quiet_init_logs()
    report = run(args.config, args.checkpoints, args.work_dir, args.names, args.stages,
                 args.max_dim, args.num_train or None, args.num_test or None, args.costs,
                 args.folds, args.max_iter, args.n_jobs, not args.low_shot_only,
                 args.low_shot or args.low_shot_only, args.k_values, args.samples, args.seed,
                 args.cfg_options, train_folder=args.train_folder, val_folder=args.val_folder)
    if report['results']:
        print(format_table(report['results'], report['stages']).replace('| probe |',
                                                                        '| SVM mAP |'))
    if report['low_shot']:
        print(format_low_shot_table(report['low_shot'], report['protocol']['k_values']))
    print('wrote ' + ', '.join(report['files'].values()))
    return report
