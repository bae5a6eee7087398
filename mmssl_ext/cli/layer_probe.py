"""``tools/analysis/layer_probe.py CONFIG CKPT [CKPT ...]``: top-1 of a linear probe and of
weighted kNN on every stage (stem, res2..res5) of a ResNet-family backbone.

The picture of Goyal et al. (2019) and the per-layer tables of PIRL / ClusterFit: how
linearly separable the classes are at each depth.  The data come from the config's ``knn_eval``
section (train = probe-train split, val = test split), or from labelled folders (one sub-folder
per class): ``--train-folder DIR/train --val-folder DIR/val``.  See
:mod:`mmssl_ext.evaluation.layer_probe` for the pooling rule and the probes::

    python tools/analysis/layer_probe.py configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py \\
        pirl=work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth random \\
        --num-train 10000 --method both

writes ``layer_probe.json`` and ``layer_probe.png`` into ``--work-dir``
(default ``work_dirs/analysis/layer_probe``) and prints a markdown table.
"""
import os.path as osp
from typing import List, Optional, Sequence

from mmssl_ext.cli.analysis_common import (build_split_loader, common_parser,
                                           load_analysis_config, load_model, parse_checkpoints,
                                           publish_figures, quiet_init_logs, write_json)
from mmssl_ext.cli.knn_eval import add_folder_args
from mmssl_ext.evaluation.layer_probe import (check_method, extract_stage_features,
                                              format_table, plot_layer_probe, probe_stages,
                                              select_stages)

TOOL = 'layer_probe'


def run(config: str, checkpoints: Sequence[str], work_dir: Optional[str] = None,
        names: Optional[Sequence[str]] = None, method: str = 'both',
        stages: Optional[Sequence[str]] = None, max_dim: int = 4096,
        num_train: Optional[int] = 10000, num_test: Optional[int] = None, k: int = 20,
        temperature: float = 0.07, weight_decay: float = 1e-4, max_iter: int = 200,
        seed: int = 0, cfg_options: Optional[dict] = None, progress: bool = True,
        train_folder: Optional[str] = None, val_folder: Optional[str] = None) -> dict:
    """Probe every stage of every checkpoint; write the JSON and the PNG; return the report.

    Returns:
        ``dict(results={name: {method: {stage: top1}}}, stages, layout, files, ...)``.
    """
    work_dir = work_dir or osp.join('work_dirs', 'analysis', TOOL)
    check_method(method)
    cfg, knn = load_analysis_config(config, cfg_options, train_folder, val_folder)
    ckpts = parse_checkpoints(checkpoints, names)
    train_loader = build_split_loader(knn, 'train', num_train, seed)
    test_loader = build_split_loader(knn, 'val', num_test, seed)
    results, layout, selected = {}, {}, None
    for name, path in ckpts:
        model = load_model(cfg, path, seed)
        selected = select_stages(model.backbone, stages)  # names the problem before extracting
        if progress:
            print(f'[{name}] extracting {len(train_loader.dataset)} probe-train and '
                  f'{len(test_loader.dataset)} test features of {", ".join(selected)}')
        train_f, train_y, layout = extract_stage_features(model, train_loader, selected,
                                                          max_dim, progress)
        test_f, test_y, _ = extract_stage_features(model, test_loader, selected, max_dim,
                                                   progress)
        results[name] = probe_stages(train_f, train_y, test_f, test_y, method, k, temperature,
                                     weight_decay, max_iter)
    files = dict(json=osp.join(work_dir, f'{TOOL}.json'), png=osp.join(work_dir, f'{TOOL}.png'))
    report = dict(
        tool=TOOL, config=config, checkpoints=dict(ckpts), stages=selected, layout=layout,
        num_train=len(train_loader.dataset), num_test=len(test_loader.dataset),
        protocol=dict(method=method, max_dim=max_dim, k=k, temperature=temperature,
                      weight_decay=weight_decay, max_iter=max_iter, seed=seed),
        results=results, files=files)
    plot_layer_probe(results, selected, files['png'],
                     title=f'per-layer probe ({report["num_train"]} train / '
                           f'{report["num_test"]} test images)')
    write_json(report, files['json'])
    publish_figures(cfg, work_dir, [files['png']])
    return report


def main(argv: Optional[List[str]] = None) -> dict:
    p = common_parser(TOOL, 'per-layer linear / kNN probe of a ResNet-family backbone')
    p.add_argument('--method', choices=['linear', 'knn', 'both'], default='both',
                   help='probe(s) per stage (default both)')
    p.add_argument('--stages', nargs='+', help='stages to probe (default stem res2 .. res5)')
    p.add_argument('--max-dim', type=int, default=4096,
                   help='pool each stage to s x s with C*s*s <= this (default 4096)')
    p.add_argument('--num-train', type=int, default=10000,
                   help='seeded subset of the probe-train split (default 10000; 0 = all)')
    p.add_argument('--num-test', type=int, default=0,
                   help='seeded subset of the test split (default 0 = all)')
    p.add_argument('--k', type=int, default=20, help='kNN neighbours (default 20)')
    p.add_argument('--temperature', type=float, default=0.07, help='kNN temperature')
    p.add_argument('--weight-decay', type=float, default=1e-4,
                   help='L2 penalty of the linear probe (default 1e-4)')
    p.add_argument('--max-iter', type=int, default=200, help='L-BFGS iterations (default 200)')
    add_folder_args(p)
    args = p.parse_args(argv)
    quiet_init_logs()
    report = run(args.config, args.checkpoints, args.work_dir, args.names, args.method,
                 args.stages, args.max_dim, args.num_train or None, args.num_test or None,
                 args.k, args.temperature, args.weight_decay, args.max_iter, args.seed,
                 args.cfg_options, train_folder=args.train_folder,
                 val_folder=args.val_folder)
    print(format_table(report['results'], report['stages']))
    print(f'wrote {report["files"]["json"]} and {report["files"]["png"]}')
    return report
