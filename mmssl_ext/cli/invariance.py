"""``tools/analysis/invariance.py CONFIG CKPT [CKPT ...]``: how invariant representations are to
rotation, jigsaw shuffling and SimCLR-style augmentation (PIRL paper, Fig. 7).

For ``--num-images`` images (a seeded sample of the config's ``knn_eval`` val split) and a
transformed version of each (the same transformed views for every checkpoint), the L2 distance
between the L2-normalised representations; one histogram figure per transform with all
checkpoints overlaid.  See :mod:`mmssl_ext.evaluation.invariance` for the transforms and the
representations::

    python tools/analysis/invariance.py configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py \\
        pirl=work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth random
    # PIRL's own f / g branches (needs a full PIRL training checkpoint):
    python tools/analysis/invariance.py configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py \\
        work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth --repr pirl --transforms jigsaw

writes ``invariance.json`` and ``invariance_<transform>.png`` into ``--work-dir``
(default ``work_dirs/analysis/invariance``) and prints mean / median / std per checkpoint, with
the distance between two different images as the scale (rows ``(other image)``).
"""
import os.path as osp
from typing import List, Optional, Sequence

import torch

from mmssl_ext.cli.analysis_common import (RANDOM, build_split_loader, common_parser,
                                           load_analysis_config, load_model, parse_checkpoints,
                                           publish_figures, quiet_init_logs, write_json)
from mmssl_ext.evaluation.invariance import (REPRESENTATIONS, check_pirl, check_transforms,
                                             distance_stats, format_stats,
                                             invariance_distances, plot_distance_histograms,
                                             reference_distances)
from mmssl_ext.utils.checkpoint import load_checkpoint_safe, state_dict_of

TOOL = 'invariance'
HEAD_PREFIXES = ('neck.', 'transform_neck.')


def load_pirl_heads(model: torch.nn.Module, checkpoint: str) -> None:
    """Load PIRL's ``f`` (``neck``) and ``g`` (``transform_neck``) from a full checkpoint.

    Raises:
        ValueError: the file has no head weights (a backbone-only file) or they do not fit.
    """
    state = state_dict_of(load_checkpoint_safe(checkpoint), source=checkpoint)
    heads = {k: v for k, v in state.items() if k.startswith(HEAD_PREFIXES)}
    if not heads:
        raise ValueError(f'{checkpoint} has no PIRL head weights (neck.* / transform_neck.*): '
                         f'--repr pirl needs a full PIRL training checkpoint, not a '
                         f'backbone-only file')
    own = {k: v for k, v in model.state_dict().items() if k.startswith(HEAD_PREFIXES)}
    missing = [k for k in own if k not in heads]
    mismatched = [f'{k}: {tuple(heads[k].shape)} in the file, {tuple(v.shape)} in the model'
                  for k, v in own.items() if k in heads and heads[k].shape != v.shape]
    if missing or mismatched:
        raise ValueError(f'the PIRL heads of {checkpoint} do not fit the config: missing '
                         f'{missing[:3]}, of another shape {mismatched[:2]}')
    model.load_state_dict(heads, strict=False)


def jigsaw_patch_size(cfg) -> Optional[int]:
    """``patch_size`` of the first ``JigsawPatches`` transform in the config's train pipeline."""
    def find(node):
        if isinstance(node, dict):
            if node.get('type') == 'JigsawPatches':
                return node.get('patch_size', 64)  # JigsawPatches' default
            children = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            return None
        for child in children:
            found = find(child)
            if found is not None:
                return found
        return None

    return find(cfg.get('train_dataloader', {}))


def run(config: str, checkpoints: Sequence[str], work_dir: Optional[str] = None,
        names: Optional[Sequence[str]] = None, transforms: Optional[Sequence[str]] = None,
        representation: str = 'backbone', num_images: Optional[int] = 1000,
        patch_size: Optional[int] = None, bins: int = 50, seed: int = 0,
        cfg_options: Optional[dict] = None, progress: bool = True) -> dict:
    """Distances for every checkpoint and transform; write the JSON and PNGs; return the report.

    ``patch_size`` (``--repr pirl`` with jigsaw): side the tiles are resized to; None takes the
    config's ``JigsawPatches.patch_size`` (the patch size PIRL trained on), 0 keeps the tiles.

    Returns:
        ``dict(stats={transform: {name: {mean, median, std, ...}}},
        reference={name: stats of the distances between different images},
        distances={transform: {name: [...]}}, files, ...)``.
    """
    work_dir = work_dir or osp.join('work_dirs', 'analysis', TOOL)
    transforms = check_transforms(transforms)
    if representation not in REPRESENTATIONS:
        raise ValueError(f'--repr must be one of {REPRESENTATIONS}, got {representation!r}')
    cfg, knn = load_analysis_config(config, cfg_options)
    ckpts = parse_checkpoints(checkpoints, names)
    if representation == 'pirl' and patch_size is None:
        patch_size = jigsaw_patch_size(cfg)
    loader = build_split_loader(knn, 'val', num_images, seed)
    stats = {t: {} for t in transforms}
    distances = {t: {} for t in transforms}
    reference = {}
    for name, path in ckpts:
        model = load_model(cfg, path, seed)
        if representation == 'pirl':
            for t in transforms:
                check_pirl(model, t)
            if path != RANDOM:
                load_pirl_heads(model, path)
        reference[name] = distance_stats(reference_distances(model, loader, representation,
                                                             seed))
        for t in transforms:
            if progress:
                print(f'[{name}] {t}: {len(loader.dataset)} images')
            d = invariance_distances(model, loader, t, representation, seed,
                                     patch_size=patch_size or None, progress=progress)
            stats[t][name] = distance_stats(d)
            distances[t][name] = [round(float(x), 6) for x in d]
    files = dict(json=osp.join(work_dir, f'{TOOL}.json'))
    for t in transforms:
        files[t] = osp.join(work_dir, f'{TOOL}_{t}.png')
        plot_distance_histograms(
            distances[t], files[t], bins=bins,
            reference={name: r['mean'] for name, r in reference.items()},
            title=f'invariance to {t} ({representation} representation, '
                  f'{len(loader.dataset)} images)')
    report = dict(tool=TOOL, config=config, checkpoints=dict(ckpts),
                  representation=representation, transforms=transforms,
                  num_images=len(loader.dataset), seed=seed,
                  patch_size=patch_size if representation == 'pirl' else None,
                  stats=stats, reference=reference, distances=distances, files=files)
    write_json(report, files['json'])
    publish_figures(cfg, work_dir, [p for k, p in files.items() if k != 'json'])
    return report


def main(argv: Optional[List[str]] = None) -> dict:
    p = common_parser(TOOL, 'invariance of representations to image transforms (PIRL Fig. 7)')
    p.add_argument('--transforms', nargs='+',
                   choices=['rotation', 'jigsaw', 'augment', 'identity'],
                   help='transforms (default rotation jigsaw augment)')
    p.add_argument('--repr', dest='representation', choices=list(REPRESENTATIONS),
                   default='backbone',
                   help="'backbone': pooled last-stage feature (default); 'pirl': PIRL's "
                        'f(v_I) and g(v_It), needs a PIRL checkpoint')
    p.add_argument('--num-images', type=int, default=1000,
                   help='seeded sample of the val split (default 1000; 0 = all)')
    p.add_argument('--patch-size', type=int,
                   help="--repr pirl jigsaw: resize tiles to this (default: the config's "
                        'JigsawPatches patch_size; 0 = keep the tile size)')
    p.add_argument('--bins', type=int, default=50, help='histogram bins on [0, 2]')
    args = p.parse_args(argv)
    quiet_init_logs()
    report = run(args.config, args.checkpoints, args.work_dir, args.names, args.transforms,
                 args.representation, args.num_images or None, args.patch_size, args.bins,
                 args.seed, args.cfg_options)
    print(format_stats(report['stats'], report['reference']))
    print(f'wrote {report["files"]["json"]} and ' + ', '.join(
        report['files'][t] for t in report['transforms']))
    return report
