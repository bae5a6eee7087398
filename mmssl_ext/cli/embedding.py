"""``tools/analysis/embedding.py CONFIG CKPT [CKPT ...]``: t-SNE (and UMAP) pictures of the
L2-normalised, globally pooled last-stage features of a seeded subset of the config's
``knn_eval`` val split, points coloured by class (names from the dataset's metainfo)::

    python tools/analysis/embedding.py configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py \\
        pirl=work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth random --num-points 2000

writes ``tsne_<name>.png`` per checkpoint (``umap_<name>.png`` too when umap-learn is
installed; otherwise one line says UMAP was skipped) and ``embedding.json`` with the silhouette
score and the 2-D kNN accuracy of each picture (:mod:`mmssl_ext.evaluation.embedding`) into
``--work-dir`` (default ``work_dirs/analysis/embedding``).
"""
import os.path as osp
from typing import List, Optional, Sequence

from mmssl_ext.cli.analysis_common import (build_split_loader, class_names, common_parser,
                                           load_analysis_config, load_model, parse_checkpoints,
                                           publish_figures, quiet_init_logs, safe_name,
                                           write_json)
from mmssl_ext.evaluation.embedding import (UMAP_MISSING, embedding_scores, plot_embedding,
                                            tsne_embedding, umap_available, umap_embedding)
from mmssl_ext.evaluation.features import extract_features

TOOL = 'embedding'


def run(config: str, checkpoints: Sequence[str], work_dir: Optional[str] = None,
        names: Optional[Sequence[str]] = None, num_points: Optional[int] = 2000,
        perplexity: float = 30.0, k: int = 20, use_umap: Optional[bool] = None, seed: int = 0,
        cfg_options: Optional[dict] = None, progress: bool = True) -> dict:
    """t-SNE (and UMAP) of every checkpoint's features; write PNGs and JSON; return the report.

    ``use_umap``: None = when umap-learn is installed (else print :data:`UMAP_MISSING`);
    True = required; False = t-SNE only.

    Returns:
        ``dict(results={name: {'tsne': {silhouette, knn_top1}, 'umap': {...} | None}},
        files=dict(json, images={name: {'tsne': png, 'umap': png}}), umap='done' | reason, ...)``.
    """
    work_dir = work_dir or osp.join('work_dirs', 'analysis', TOOL)
    cfg, knn = load_analysis_config(config, cfg_options)
    ckpts = parse_checkpoints(checkpoints, names)
    have_umap = umap_available()
    if use_umap and not have_umap:
        raise ImportError(UMAP_MISSING.replace('UMAP skipped', 'UMAP asked for'))
    do_umap = have_umap if use_umap is None else use_umap
    umap_note = 'done' if do_umap else (UMAP_MISSING if not have_umap else 'not asked for')
    if use_umap is None and not have_umap:
        print(UMAP_MISSING)
    loader = build_split_loader(knn, 'val', num_points, seed)
    classes = class_names(loader)
    results, files = {}, dict(json=osp.join(work_dir, f'{TOOL}.json'), images={})
    for name, path in ckpts:
        model = load_model(cfg, path, seed)
        if progress:
            print(f'[{name}] extracting {len(loader.dataset)} features')
        feats, labels = extract_features(model, loader, progress=progress)  # L2-normalised
        results[name], files['images'][name] = {}, {}
        methods = [('tsne', 't-SNE', lambda f: tsne_embedding(f, seed, perplexity))]
        if do_umap:
            methods.append(('umap', 'UMAP', lambda f: umap_embedding(f, seed)))
        for key, label, fn in methods:
            emb = fn(feats)
            scores = embedding_scores(emb, labels, k)
            results[name][key] = scores
            sil = 'n/a' if scores['silhouette'] is None else f'{scores["silhouette"]:.3f}'
            files['images'][name][key] = plot_embedding(
                emb, labels, classes, osp.join(work_dir, f'{key}_{safe_name(name)}.png'),
                title=f'{name}: {label} of {len(feats)} images\n(silhouette {sil}, '
                      f'{min(k, len(feats) - 1)}-NN in 2-D {scores["knn_top1"]:.1f}%)')
        if not do_umap:
            results[name]['umap'] = None
    report = dict(tool=TOOL, config=config, checkpoints=dict(ckpts),
                  num_points=len(loader.dataset), classes=classes, seed=seed,
                  perplexity=perplexity, k=k,
                  umap=umap_note, results=results, files=files)
    write_json(report, files['json'])
    publish_figures(cfg, work_dir, [p for per in files['images'].values()
                                    for p in per.values()])
    return report


def format_results(results: dict) -> str:
    lines = ['| checkpoint | embedding | silhouette | 2-D kNN top-1 |', '|---|---|---:|---:|']
    for name, per in results.items():
        for key, scores in per.items():
            if scores is None:
                continue
            sil = '-' if scores['silhouette'] is None else f'{scores["silhouette"]:.3f}'
            lines.append(f'| {name} | {key} | {sil} | {scores["knn_top1"]:.2f} |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> dict:
    p = common_parser(TOOL, 't-SNE / UMAP pictures of backbone features, coloured by class')
    p.add_argument('--num-points', type=int, default=2000,
                   help='seeded subset of the val split (default 2000; 0 = all)')
    p.add_argument('--perplexity', type=float, default=30.0, help='t-SNE perplexity')
    p.add_argument('--k', type=int, default=20, help='neighbours of the 2-D kNN score')
    p.add_argument('--no-umap', action='store_true', help='t-SNE only')
    args = p.parse_args(argv)
    quiet_init_logs()
    report = run(args.config, args.checkpoints, args.work_dir, args.names,
                 args.num_points or None, args.perplexity, args.k,
                 False if args.no_umap else None, args.seed, args.cfg_options)
    print(format_results(report['results']))
    written = [f for per in report['files']['images'].values() for f in per.values()]
    print(f'wrote {report["files"]["json"]} and ' + ', '.join(written))
    return report
