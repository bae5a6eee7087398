"""Feature quality per method at the same compute budget: pre-train on Fashion-MNIST, then kNN
(k=20 and k=200) and a linear probe on the frozen backbone, every method with the same backbone,
image size and number of backbone-equivalent images; baselines in the same table.

Budget: ``--budget`` backbone-equivalent images, i.e. pixels through the (student) backbone
divided by 32 x 32.  Each method's pixels per training sample are measured with a forward hook
on ``model.backbone`` over one real batch (PIRL: a 32 px image + 9 patches of 16 px = 3.25;
rotation: 4 rotated images = 4; SimCLR: 2 views = 2 ...), and its iterations are
``budget / (batch * pixels per sample)``; the config's iteration schedule (warm-up, cosine) is
rescaled to that length.  Periodic re-clustering passes (DeepCluster / ODC) and momentum /
teacher encoders are extra compute, reported in the JSON (``images_per_sample`` counts the
trained backbone only).  ClusterFit (``clusterfit``: clusters of a random-init network;
``clusterfit-<m>``: of method ``<m>``, trained earlier in the same invocation) spends the budget
in its fit step; the cluster step's forward pass (and ``<m>``'s own budget) come on top.

Evaluation: weighted kNN (cosine, T=0.07) of pooled last-stage features of all 60k training
images against the 10k test images (``tools/knn_eval.py``'s protocol), and a linear probe
(multinomial logistic regression by L-BFGS on standardised pooled last-stage features of
``--probe-train`` training images, top-1 on the 10k test images; the per-layer tool's probe).
Baselines: raw pixels (kNN and linear), the random-init backbone, and supervised training of
the same backbone on the labels with the same budget (an upper bound).

    .venv/bin/python -m benchmarks.quality --preset cpu       # reduced set, < 1 h on 2 cores
    .venv/bin/python -m benchmarks.quality --preset gpu       # all methods, 60k images, GPU
    .venv/bin/python -m benchmarks.quality --methods pirl rotation --budget 50000 --baselines
    # fewer, larger steps on a launch-bound GPU (lr scaled linearly; same images per method)
    .venv/bin/python -m benchmarks.quality --preset gpu --methods simclr --batch-size 256

Writes ``benchmarks/results/quality_<methods>_<device>-<budget>_seed<N>.json`` and ``.md``
(:func:`result_name`; ``--tag`` names them instead), with the command, the machine and the date.
"""
import argparse
import contextlib
import copy
import math
import os
import os.path as osp
import time
from typing import Dict, Iterator, List, Optional

import torch

from benchmarks import report as rep
from benchmarks.report import REPO

#: name -> Fashion-MNIST pre-training config (same backbone: ResNet-18, 32 px input)
METHODS: Dict[str, str] = {
    'pirl': 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py',
    'pirl-per-term-negatives': 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py',
    'pirl-cifar': 'configs/pirl/pirl_r18-cifar-w32_1xb64-2400it_fmnist.py',
    'rotation': 'configs/rotation/rotation_r18-w32_1xb64-3000it_fmnist.py',
    'jigsaw': 'configs/jigsaw/jigsaw_r18-w32_1xb64-3000it_fmnist.py',
    'relative_loc': 'configs/relative_loc/relative-loc_r18-w32_1xb64-3000it_fmnist.py',
    'colorization': 'configs/colorization/colorization_r18-w32_1xb64-3000it_fmnist.py',
    'inpainting': 'configs/inpainting/inpainting_r18-w32_1xb64-3000it_fmnist.py',
    'dae': 'configs/dae/dae_r18-w32_1xb64-3000it_fmnist.py',
    'contractive-ae':
        'configs/contractive_ae/contractive-ae_r18-w32_1xb64-3000it_fmnist.py',
    'vae': 'configs/vae/vae_r18-w32_1xb64-3000it_fmnist.py',
    'npid': 'configs/npid/npid_r18-w32_1xb64-3000it_fmnist.py',
    'npid-pp': 'configs/npid/npid-pp_r18-w32_1xb64-3000it_fmnist.py',
    'exemplar-cnn': 'configs/exemplar_cnn/exemplar-cnn_r18-w32_1xb64-3000it_fmnist.py',
    'looc': 'configs/looc/looc_r18-w32_1xb64-3000it_fmnist.py',
    'deepcluster': 'configs/deepcluster/deepcluster_r18-w32_1xb64-3000it_fmnist.py',
    'odc': 'configs/odc/odc_r18-w32_1xb64-3000it_fmnist.py',
    'local_aggregation':
        'configs/local_aggregation/local-aggregation_r18-w32_1xb64-3000it_fmnist.py',
    'pcl': 'configs/pcl/pcl-v2_r18-w32_1xb64-3000it_fmnist.py',
    'sela': 'configs/sela/sela_r18-w32_1xb64-3000it_fmnist.py',
    'bigbigan': 'configs/bigbigan/bigbigan_r18-w32_1xb64-3000it_fmnist.py',
    'cmc': 'configs/cmc/cmc_r18-w32_1xb64-3000it_fmnist.py',
    'cmc-lcrops': 'configs/cmc/cmc-lcrops_r18-w32_1xb64-3000it_fmnist.py',
    'cpcv2': 'configs/cpc/cpcv2_r18-w32_1xb64-3000it_fmnist.py',
    'amdim': 'configs/amdim/amdim_r18-w32_1xb64-3000it_fmnist.py',
    'dino': 'configs/dino/dino_r18-w32_1xb64-3000it_fmnist.py',
    'dino-vit': 'configs/dino/dino_vit-tiny-p4_1xb64-3000it_fmnist.py',
    'simclr': 'configs/simclr/simclr_r18-w32_1xb64-3000it_fmnist.py',
    'mocov2': 'configs/mocov2/mocov2_r18_1xb64-1300it_fmnist.py',
    'mocov3': 'configs/mocov3/mocov3_r18-w32_1xb64-3000it_fmnist.py',
    'byol': 'configs/byol/byol_r18-w32_1xb64-3000it_fmnist.py',
    'simsiam': 'configs/simsiam/simsiam_r18-w32_1xb64-3000it_fmnist.py',
    'swav': 'configs/swav/swav_r18-w32_1xb64-mcrop-3000it_fmnist.py',
    'barlowtwins': 'configs/barlowtwins/barlowtwins_r18-w32_1xb64-3000it_fmnist.py',
    'barlowtwins-p2048': 'configs/barlowtwins/barlowtwins_r18-w32_1xb64-3000it_fmnist.py',
    'clusterfit': 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py',
    'clusterfit-pirl': 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py',
    'clusterfit-rotation': 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py',
}
#: settings applied on top of a method's config so that every method has the same backbone
#: (ResNet-18 at half width); configs/mocov2's Fashion-MNIST config predates that size.
#: 'barlowtwins-p2048' is the recipe with a 2048-2048-2048 projector instead of 8192 (the size
#: solo-learn's ResNet-18 Barlow Twins recipe uses): the recipe's 8192-d one has many times the
#: half-width backbone's multiply-adds per image, too slow for a CPU budget (benchmarks/README.md)
OVERRIDES: Dict[str, dict] = {
    'mocov2': {'model.backbone.stem_channels': 32, 'model.backbone.base_channels': 32,
               'model.neck.in_channels': 256, 'model.neck.hid_channels': 256},
    'barlowtwins-p2048': {'model.neck.hid_channels': 2048, 'model.neck.out_channels': 2048,
                          'model.head.in_channels': 2048},
    # PIRL's main job with one negative draw per loss term, as VISSL (configs/pirl/README.md)
    'pirl-per-term-negatives': {'model.shared_negatives': False},
}
SUPERVISED = 'configs/clusterfit/supervised_r18-w32_1xb64-3000it_fmnist.py'

#: ClusterFit, two stages: the pooled last-stage features of the training images under N_pre,
#: k-means into CLUSTERFIT_K clusters (``tools/clusterfit.py cluster``), then the fit config
#: trained from scratch on the cluster ids with the method's budget (``tools/clusterfit.py
#: fit``).  N_pre of 'clusterfit' is the random-init backbone of the table's `random init` row
#: (PIRL's config, ``zero_init_residual=False``; no pre-training compute: the control of
#: configs/clusterfit/README.md; the fit config's own random init, mmpretrain's default
#: ``zero_init_residual=True``, starts every residual branch at zero and clusters badly); of
#: 'clusterfit-<m>' the checkpoint of method <m> trained earlier in the same invocation, whose
#: own budget comes on top (the row records it)
CLUSTERFIT_PRE: Dict[str, Optional[str]] = {
    'clusterfit': None, 'clusterfit-pirl': 'pirl', 'clusterfit-rotation': 'rotation'}
CLUSTERFIT_K = 100

#: methods whose backbone is not the reference ResNet-18 on RGB (1-channel L input, GroupNorm,
#: a ViT): their own random initialisation is evaluated too, as their baseline
OWN_RANDOM = {'cmc', 'cmc-lcrops', 'cpcv2', 'dino-vit', 'colorization', 'pirl-cifar'}
#: the auto-encoders' configs feed [0, 1] images (mean 0, std 255), not ImageNet-normalised ones:
#: their random init differs; 'dae' stands for the three (same backbone and preprocessor)
OWN_RANDOM |= {'dae'}

#: methods whose training-set subset is part of the method, not of the budget: kept by the
#: full-train presets (Exemplar-CNN: the seed images are its surrogate classes)
OWN_SUBSET = {'exemplar-cnn'}

#: methods whose loss needs state a hook builds first (pseudo labels before the first epoch):
#: one 32 px view per sample, by construction of their configs
KNOWN_IMAGES_PER_SAMPLE = {'deepcluster': 1.0, 'odc': 1.0, 'sela': 1.0,
                           **{name: 1.0 for name in CLUSTERFIT_PRE}}

PRESETS = {
    # 2 CPU cores: a reduced set, ~200k backbone images each (PIRL: ~1000 iterations x 64)
    'cpu': dict(budget=200_000, methods=['pirl', 'rotation', 'jigsaw', 'npid', 'mocov2'],
                full_train=False, probe_train=10000, threads=2, workers=2),
    # a lent GPU: all methods, all 60k training images, ~30 epochs of 2 views
    'gpu': dict(budget=3_600_000, methods=list(METHODS), full_train=True, probe_train=60000,
                threads=4, workers=6),
}
REFERENCE_PIXELS = 32 * 32


# ------------------------------------------------------------------------------------ budget
@contextlib.contextmanager
def counting_pixels(backbone: torch.nn.Module) -> Iterator[List[int]]:
    """``with counting_pixels(model.backbone) as pixels: ...``: ``pixels`` receives, for every
    call of ``backbone`` inside the block, ``batch x height x width`` of its input."""
    pixels: List[int] = []

    def hook(_module, args):
        x = args[0]
        pixels.append(x.shape[0] * x.shape[-1] * x.shape[-2])

    handle = backbone.register_forward_pre_hook(hook)
    try:
        yield pixels
    finally:
        handle.remove()


def backbone_images_per_sample(cfg, batch_size: int = 4) -> float:
    """Pixels through ``model.backbone`` per training sample (in 32 x 32 images), measured
    with a forward pre-hook over one real training batch."""
    from mmengine.registry import DefaultScope
    from mmssl_ext.registry import MODELS
    from mmssl_ext.utils.config import build_dataloader
    cfg = copy.deepcopy(cfg)
    loader_cfg = cfg.train_dataloader
    loader_cfg.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmpretrain')):
        model = MODELS.build(cfg.model)
        loader = build_dataloader(loader_cfg, seed=0)
    model.init_weights()
    model.train()
    with counting_pixels(model.backbone) as pixels:
        batch = next(iter(loader))
        data = model.data_preprocessor(batch, True)
        model(**data, mode='loss')
    return sum(pixels) / batch_size / REFERENCE_PIXELS


def rescale_schedule(cfg, iters: int) -> None:
    """Set an iteration-based config to ``iters`` iterations, scaling its iteration schedulers
    (``begin`` / ``end`` / ``T_max``) in proportion, one checkpoint at the end, no kNN hook."""
    loop = cfg.train_cfg
    if loop.get('type') != 'IterBasedTrainLoop':
        raise ValueError(f'{cfg.filename}: the quality benchmark needs an iteration-based '
                         f"config (train_cfg.type='IterBasedTrainLoop'), got {loop.get('type')}")
    old = loop.max_iters
    loop.max_iters = iters
    scheds = cfg.param_scheduler
    if isinstance(scheds, dict) and 'type' not in scheds:  # one list per optimiser (a GAN)
        scheds = [s for v in scheds.values() for s in (v if isinstance(v, (list, tuple))
                                                       else [v])]
    scheds = list({id(s): s for s in (scheds if isinstance(scheds, (list, tuple))
                                      else [scheds])}.values())  # each scheduler once
    for s in scheds:
        if s.get('by_epoch', True):
            raise ValueError(f'{cfg.filename}: param_scheduler {s.get("type")} is by epoch')
        for key in ('begin', 'end', 'T_max'):
            if key in s:
                s[key] = min(iters, max(1, round(s[key] * iters / old))) if s[key] else 0
    cfg.default_hooks.checkpoint.update(interval=iters, by_epoch=False, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = max(1, min(50, iters // 20))
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'KNNEvalHook']


def _resize_dataset_keys(node, old: int, new: int) -> List[str]:
    """Set every ``length`` / ``num_samples`` equal to ``old`` below ``node`` to ``new``."""
    from mmssl_ext.engine.data_sizing import DATASET_SIZE_KEYS
    changed = []
    items = (node.items() if isinstance(node, dict) else
             enumerate(node) if isinstance(node, (list, tuple)) else ())
    for key, value in items:
        if key in DATASET_SIZE_KEYS and value == old and not isinstance(value, bool):
            node[key] = new
            changed.append(str(key))
        else:
            changed += [f'{key}.{c}' for c in _resize_dataset_keys(value, old, new)]
    return changed


def apply_data(cfg, full_train: bool, workers: int) -> None:
    """Loader workers; with ``full_train`` drop the config's ``indices`` (all training images)
    and resize what holds one entry per training image (memory banks, DeepCluster's labels)."""
    ds = cfg.train_dataloader.dataset
    if full_train and 'indices' in ds:
        old = ds.pop('indices')
        if not isinstance(old, int):
            raise ValueError(f'{cfg.filename}: train_dataloader.dataset.indices={old!r}: the '
                             'full-train budget handles an int (the first N images) only')
        from mmengine.registry import DefaultScope
        from mmssl_ext.registry import DATASETS
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmpretrain')):
            new = len(DATASETS.build(copy.deepcopy(ds)))
        changed = [f'model.{c}' for c in _resize_dataset_keys(cfg.model, old, new)]
        for i, h in enumerate(cfg.get('custom_hooks', [])):
            changed += [f'custom_hooks.{i}.{c}' for c in _resize_dataset_keys(h, old, new)]
        if changed:
            print(f'[full train] {old} -> {new} images: ' + ', '.join(changed), flush=True)
    cfg.train_dataloader.num_workers = workers
    cfg.train_dataloader.persistent_workers = workers > 0


def apply_batch_size(cfg, batch: Optional[int]) -> None:
    """Train with ``batch`` samples per iteration instead of the config's, scaling the lr
    linearly (mmengine's ``auto_scale_lr``, based on the config's own batch size: its lr is
    tuned for that).  One process only, as the benchmark runs."""
    if batch is None:
        return
    if batch < 1:
        raise ValueError(f'--batch-size must be positive, got {batch}')
    old = cfg.train_dataloader.batch_size
    cfg.train_dataloader.batch_size = batch
    cfg.auto_scale_lr = dict(enable=True, base_batch_size=old)
    print(f'[batch] {old} -> {batch} samples per iteration, lr x {batch / old:g}', flush=True)


# -------------------------------------------------------------------------------- evaluation
def evaluate(cfg, checkpoint: str, probe_train: int, seed: int = 0,
             raw_pixels: bool = False, weights: str = 'default') -> Dict[str, float]:
    """kNN k=20 / k=200 on 60k -> 10k and a linear probe on ``probe_train`` train images;
    ``weights``: the backbone of a teacher-student checkpoint (``select_backbone``)."""
    from mmssl_ext.cli.knn_eval import RawPixels
    from mmssl_ext.evaluation.features import extract_features
    from mmssl_ext.evaluation.knn import knn_evaluate
    from mmssl_ext.evaluation.layer_probe import linear_probe
    from mmssl_ext.utils.checkpoint import load_backbone_weights
    from mmssl_ext.utils.config import build_dataloader, build_model
    knn = cfg.knn_eval
    model = build_model(cfg, seed)
    if checkpoint not in ('random', 'pixels'):
        load_backbone_weights(model, checkpoint, weights=weights)
    model.eval()
    backbone = RawPixels() if raw_pixels else None
    feats = {}
    for split in ('train', 'val'):
        loader = build_dataloader(knn[f'{split}_dataloader'], seed=seed)
        feats[split] = extract_features(model, loader, normalize=False, backbone=backbone,
                                        progress=False)
    (tr_f, tr_y), (te_f, te_y) = feats['train'], feats['val']
    out = knn_evaluate(torch.nn.functional.normalize(tr_f, dim=1), tr_y,
                       torch.nn.functional.normalize(te_f, dim=1), te_y, ks=(20, 200),
                       temperature=0.07, topk=(1, ))
    g = torch.Generator().manual_seed(seed)
    sub = torch.randperm(len(tr_f), generator=g)[:probe_train]
    out['linear_top1'] = linear_probe(tr_f[sub], tr_y[sub], te_f, te_y)
    return {k: round(float(v), 2) for k, v in out.items()}


def evaluate_other_weights(cfg, checkpoint: str, probe_train: int) -> dict:
    """Of a teacher-student checkpoint: which backbone the row's numbers are of (``weights``,
    the one the method's authors evaluate) and the other one's numbers; ``{}`` otherwise."""
    from mmssl_ext.utils.checkpoint import (find_two_encoder_layout, load_checkpoint_safe,
                                            state_dict_of)
    layout = find_two_encoder_layout(state_dict_of(load_checkpoint_safe(checkpoint)))
    if layout is None:
        return {}
    other = 'student' if layout.evaluated == 'teacher' else 'teacher'
    return dict(weights=layout.evaluated, other_weights=dict(
        weights=other, **evaluate(cfg, checkpoint, probe_train, weights=other)))


# ------------------------------------------------------------------------------------ runner
def clusterfit_clusters(name: str, cfg, args, preset: dict, rows: Dict[str, dict]) -> dict:
    """ClusterFit's cluster step for ``name``; points ``cfg`` (the fit config) at its output
    and returns what the row records about N_pre and the clusters."""
    from mmssl_ext import clusterfit as cf
    pre = CLUSTERFIT_PRE[name]
    if pre is None:  # the `random init` row's network
        pre_config, checkpoint = osp.join(REPO, METHODS['pirl']), 'random'
    else:
        done = rows.get(pre) or {}
        if 'k20_top1' not in done:
            raise ValueError(f'{name}: N_pre is method {pre!r} trained in the same invocation; '
                             f'list {pre} before {name} in --methods')
        pre_config = osp.join(args.work_dir, f'{pre}.py')  # the config as it was trained
        checkpoint = osp.join(args.work_dir, pre, f"iter_{done['iterations']}.pth")
    start = time.time()
    clusters = osp.join(args.work_dir, name, 'clusters')
    # the images: the fit config's knn_eval train split, as this run set it (data root ...)
    data_config = osp.join(args.work_dir, f'{name}-images.py')
    os.makedirs(args.work_dir, exist_ok=True)
    cfg.dump(data_config)
    summary = cf.cluster(clusters, cf.NPreSpec(config=pre_config, checkpoint=checkpoint),
                         cf.ImageSource(data_config=data_config,
                                        num_samples=preset.get('subset')),
                         cf.KMeansOptions(k=CLUSTERFIT_K), progress=False)
    cfg.merge_from_dict(cf.fit_overrides(clusters, cfg))
    info = dict(n_pre=pre or 'random init', n_pre_config=osp.relpath(pre_config, REPO),
                n_pre_checkpoint=checkpoint, k=CLUSTERFIT_K,
                clustered_images=summary['num_samples'],
                cluster_nmi=summary.get('nmi_vs_dataset_labels'),
                cluster_sizes=[summary['min_size'], summary['max_size']],
                cluster_seconds=round(time.time() - start, 1))
    if pre is not None:
        info['n_pre_backbone_images'] = rows[pre]['backbone_images']
    print(f'[{name}] clusters: {info}', flush=True)
    return info


def run_method(name: str, config: str, args, preset: dict,
               rows: Optional[Dict[str, dict]] = None) -> dict:
    from mmssl_ext.cli import train as train_api
    from mmssl_ext.utils.config import load_config
    cfg = load_config(osp.join(REPO, config))
    cfg.merge_from_dict(OVERRIDES.get(name, {}))
    if getattr(args, 'seed', None) is not None:  # training seed; the evaluation keeps seed 0
        cfg.randomness = dict(cfg.get('randomness', {}), seed=args.seed)
    apply_data(cfg, preset['full_train'] and name not in OWN_SUBSET, preset['workers'])
    config_batch = cfg.train_dataloader.batch_size
    apply_batch_size(cfg, getattr(args, 'batch_size', None))
    per_sample = KNOWN_IMAGES_PER_SAMPLE.get(name) or backbone_images_per_sample(cfg)
    batch = cfg.train_dataloader.batch_size
    iters = max(1, math.ceil(preset['budget'] / (batch * per_sample)))
    row = dict(config=config, overrides=OVERRIDES.get(name, {}), batch_size=batch,
               lr_scale=round(batch / config_batch, 4),
               images_per_sample=round(per_sample, 3),
               iterations=iters, samples=iters * batch,
               backbone_images=round(iters * batch * per_sample),
               seed=cfg.get('randomness', {}).get('seed'))
    print(f'[{name}] {per_sample:.2f} backbone images per sample -> {iters} iterations x '
          f'{batch}', flush=True)
    if args.dry_run:
        return row
    if name in OWN_RANDOM:
        start = time.time()
        row['random_init'] = evaluate(cfg, 'random', preset['probe_train'])
        print(f'[{name}] random init of its backbone: {row["random_init"]} '
              f'({time.time() - start:.0f} s)', flush=True)
    if args.only_random:
        return row
    if name in CLUSTERFIT_PRE:
        row['clusterfit'] = clusterfit_clusters(name, cfg, args, preset, rows or {})
    rescale_schedule(cfg, iters)
    work = osp.join(args.work_dir, name)
    cfg.work_dir = work
    cfg.experiment_name = f'quality_{name}'
    dumped = osp.join(args.work_dir, f'{name}.py')
    os.makedirs(args.work_dir, exist_ok=True)
    cfg.dump(dumped)
    start = time.time()
    train_api.main([dumped, '--work-dir', work])
    row['train_seconds'] = round(time.time() - start, 1)
    row['images_per_second'] = round(row['samples'] / row['train_seconds'], 1)
    start = time.time()
    row.update(evaluate(cfg, osp.join(work, f'iter_{iters}.pth'), preset['probe_train']))
    row.update(evaluate_other_weights(cfg, osp.join(work, f'iter_{iters}.pth'),
                                      preset['probe_train']))
    row['eval_seconds'] = round(time.time() - start, 1)
    print(f'[{name}] {row}', flush=True)
    return row


def markdown(report: dict) -> str:
    lines = [f"## Feature quality, preset `{report['preset']}` ({report['date']})", '',
             *rep.provenance(report)[:2],
             f"Budget: {report['budget']:,} backbone-equivalent 32 px images per method "
             f"({'all 60k' if report['full_train'] else 'the first 10k'} training images); "
             f"linear probe on {report['probe_train']} training images.", '',
             '| method | kNN k=20 | kNN k=200 | linear | iterations x batch | backbone images '
             '/ sample | train s | samples / s |',
             '|---|---:|---:|---:|---|---:|---:|---:|']
    for name, r in report['rows'].items():
        if 'k20_top1' not in r and 'random_init' not in r:
            lines.append(f"| {name} | {r.get('error', 'not run')} | | | | | | |")
            continue
        it = f"{r['iterations']} x {r['batch_size']}" if 'iterations' in r else '-'
        if 'random_init' in r:
            ri = r['random_init']
            lines.append(f"| {name}: random init of its backbone | {ri['k20_top1']:.2f} | "
                         f"{ri['k200_top1']:.2f} | {ri['linear_top1']:.2f} | | | | |")
        if 'k20_top1' not in r:
            continue
        label = f"{name} ({r['weights']})" if 'weights' in r else name
        lines.append(f"| {label} | {r['k20_top1']:.2f} | {r['k200_top1']:.2f} | "
                     f"{r['linear_top1']:.2f} | {it} | {r.get('images_per_sample', '-')} | "
                     f"{r.get('train_seconds', '-')} | {r.get('images_per_second', '-')} |")
        if 'other_weights' in r:
            ow = r['other_weights']
            lines.append(f"| {name} ({ow['weights']}) | {ow['k20_top1']:.2f} | "
                         f"{ow['k200_top1']:.2f} | {ow['linear_top1']:.2f} | | | | |")
    notes = [(name, r['clusterfit']) for name, r in report['rows'].items() if 'clusterfit' in r]
    if notes:
        lines.append('')
    for name, c in notes:
        pre = (f"`{c['n_pre']}` of this table ({c['n_pre_backbone_images']:,} backbone "
               f"images of its own on top of the fit's)" if 'n_pre_backbone_images' in c
               else 'the `random init` row\'s network (no pre-training)')
        lines.append(f"- `{name}`: N_pre = {pre}; k-means K={c['k']} of "
                     f"{c['clustered_images']:,} training images (sizes "
                     f"{c['cluster_sizes'][0]}-{c['cluster_sizes'][1]}, NMI with the labels "
                     f"{c['cluster_nmi']}, {c['cluster_seconds']} s), then the fit config "
                     f"trained from scratch on the cluster ids.")
    return '\n'.join(lines) + '\n'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line; ``args.methods``: the methods to train (the preset's by default,
    ``supervised`` moved to ``args.baselines``), ``args.settings``: the preset with the flags'
    budget and workers."""
    p = argparse.ArgumentParser(prog='python -m benchmarks.quality',
                                description=__doc__.splitlines()[0])
    p.add_argument('--preset', choices=sorted(PRESETS), default='cpu')
    p.add_argument('--methods', nargs='*', choices=sorted(METHODS) + ['all', 'supervised'],
                   help="methods (default: the preset's; none: only the baselines); "
                   "'supervised' is the supervised baseline, as --baselines supervised")
    p.add_argument('--budget', type=int, help='backbone-equivalent images per method')
    p.add_argument('--baselines', nargs='*', default=['pixels', 'random', 'supervised'],
                   choices=['pixels', 'random', 'supervised'],
                   help='baselines to run (default all three; none: --baselines)')
    p.add_argument('--dry-run', action='store_true', help='only measure and print iterations')
    p.add_argument('--only-random', action='store_true',
                   help='no training: only the own random-init baselines of the methods')
    p.add_argument('--workers', type=int,
                   help="train_dataloader.num_workers (default: the preset's); lower it when "
                   'several invocations share the machine')
    p.add_argument('--batch-size', type=int,
                   help="samples per iteration for every trained method (default: each "
                   "config's), the lr scaled linearly; fewer, larger steps use a GPU better")
    p.add_argument('--work-dir', default='work_dirs/benchmarks/quality')
    p.add_argument('--out', default=rep.RESULTS)
    p.add_argument('--tag', help='results file name: quality_<tag>.json (default: what it '
                   'measures, see result_name)')
    p.add_argument('--seed', type=int,
                   help="training seed (default: the config's); the evaluation always uses 0")
    args = p.parse_args(argv)
    preset = dict(PRESETS[args.preset])
    if args.budget:
        preset['budget'] = args.budget
    if args.workers is not None:
        preset['workers'] = args.workers
    methods = preset['methods'] if args.methods is None else args.methods
    if 'all' in methods:
        methods = list(METHODS)
    if 'supervised' in methods:
        methods = [m for m in methods if m != 'supervised']
        args.baselines = list(dict.fromkeys(list(args.baselines) + ['supervised']))
    args.methods, args.settings = list(methods), preset
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    preset, methods = args.settings, args.methods
    torch.set_num_threads(preset['threads'])
    import mmssl_ext  # noqa: F401
    from mmssl_ext.utils.config import load_config
    # the training images of the subset budget (the configs' `indices`: the first N), which
    # ClusterFit's cluster step takes too
    preset['subset'] = None if preset['full_train'] else load_config(
        osp.join(REPO, METHODS['pirl'])).train_dataloader.dataset.indices
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    report = rep.new_report(
        'benchmarks.quality', argv, preset=args.preset, budget=preset['budget'],
        full_train=preset['full_train'], probe_train=preset['probe_train'],
        machine=rep.machine(preset['threads'], device), rows={})
    if not args.dry_run:
        args.tag = args.tag or result_name(args, device)
        cfg = load_config(osp.join(REPO, METHODS['pirl']))
        if 'pixels' in args.baselines:
            report['rows']['raw pixels'] = evaluate(cfg, 'pixels', preset['probe_train'],
                                                    raw_pixels=True)
        if 'random' in args.baselines:
            report['rows']['random init'] = evaluate(cfg, 'random', preset['probe_train'])
    if 'supervised' in args.baselines:
        methods = list(methods) + ['supervised']
    for name in methods:
        config = SUPERVISED if name == 'supervised' else METHODS[name]
        if not osp.isfile(osp.join(REPO, config)):
            report['rows'][name] = dict(config=config, error='config missing')
            continue
        report['rows'][name] = run_method(name, config, args, preset, report['rows'])
        if not args.dry_run:
            _write(report, args)
    if not args.dry_run:
        _write(report, args)
        print(markdown(report))
    return report


def config_seed(names: List[str]) -> Optional[int]:
    """The training seed the configs of ``names`` share (``randomness.seed``), else None."""
    from mmssl_ext.utils.config import load_config
    seeds = {load_config(osp.join(REPO, SUPERVISED if n == 'supervised' else METHODS[n]))
             .get('randomness', {}).get('seed') for n in names}
    return seeds.pop() if len(seeds) == 1 else None


def result_name(args: argparse.Namespace, device: str) -> str:
    """``<methods>_<device>[-<preset>-preset]-<budget>[-b<batch>]_seed<N>`` (``all`` for every
    method; the baselines' names when nothing is trained): what the results file of ``args``
    (:func:`parse_args`) run on ``device`` holds."""
    device = 'gpu' if device == 'cuda' else device
    trained = [m for m in args.methods if m in METHODS]
    if 'supervised' in args.baselines:
        trained.append('supervised')
    what = (['all'] + [m for m in trained if m not in METHODS] if set(METHODS) <= set(trained)
            else trained) or [b for b in args.baselines if b != 'supervised']
    setting = [device, f'{args.preset}-preset' if args.preset != device else '']
    if args.only_random:  # nothing trained: the methods' own random inits
        return rep.result_name([m for m in args.methods if m in METHODS], *setting,
                               'random-init')
    if not trained:
        return rep.result_name(what, *setting)
    setting += [rep.count(args.settings['budget']),
                f'b{args.batch_size}' if args.batch_size else '']
    seed = args.seed if args.seed is not None else config_seed(trained)
    return rep.result_name(what, *setting, seed=seed)


def _write(report: dict, args) -> None:
    rep.write(report, markdown(report), 'quality', args.tag, args.out)


if __name__ == '__main__':
    main()
