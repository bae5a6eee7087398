"""``tools/clusterfit.py``: ClusterFit (Yan et al., CVPR 2020) as sub-commands; the logic is in
:mod:`mmssl_ext.clusterfit`.

* ``cluster`` — extract globally pooled features of a training set with a pretrained network
  N_pre, L2-normalise (optionally PCA), faiss k-means with K clusters, and write the cluster ids
  as pseudo labels in mmpretrain's annotation format.  N_pre is any of

  - an mmssl_ext / mmpretrain config + a full training checkpoint (``--config C --checkpoint X``),
  - the same config + a backbone-only checkpoint from ``tools/extract_backbone.py``,
  - a torchvision model with local weights (``--torchvision resnet18 --weights r18.pth``;
    nothing is ever downloaded; the file is read with the safe loader).

  The images come from the ``knn_eval.train_dataloader`` of ``--data-config`` (default: the
  N_pre config; ``configs/_base_/datasets/fmnist_knn.py`` defines one for Fashion-MNIST) or from
  an explicit ``--data-root [--ann-file] [--data-prefix]`` (``--unlabeled``: a plain folder of
  images at any depth; or an N_pre config that trains on such a folder, e.g.
  ``configs/pirl/pirl_r18-w32_1xb64-3000it_folder.py``: that folder).  ``--out-dir`` receives
  ``train_clusters.txt`` (``relative/path.png <cluster id>`` per line, relative to the data
  prefix: ``CustomDataset(data_root=..., data_prefix=..., ann_file=...)`` reads it),
  ``centroids.npy``, ``summary.json`` (K, N, cluster sizes, objective, re-seeded empty clusters,
  source model, data location, timings) and, on request, ``features.npy`` / ``pca.npz``.
* ``fit`` — train a fit config (an ordinary mmpretrain ``ImageClassifier``, from scratch) on the
  annotation file, the clustered image folder and K.
* ``run`` — cluster -> fit -> extract the backbone, in one command.
* ``soft-targets`` — the distillation baseline's targets: N_pre's *soft* predictions,
  ``softmax(logits / T)`` of an mmpretrain ImageClassifier (``--config C --checkpoint X``), or,
  for a self-supervised N_pre, ``softmax(cos(feature, centroid_k) / T)`` over the centroids of a
  cluster step (``--clusters DIR``).  ``--out-dir`` receives ``soft_targets.npy`` (N x C),
  ``train_soft.txt`` (the same N images in the same order, ``path argmax``) and
  ``soft_targets.json`` (mode, T, source, statistics).
* ``distill`` — train a distillation config (``SoftLabelDataset`` + ``DistillationKLLoss``) on a
  soft-target folder; the loss temperature is the T the targets were made with.
* ``noise-control`` — the paper's label-noise control experiment (Fig. 6) in miniature, see
  :mod:`mmssl_ext.clusterfit.experiments.noise_control`.

``fit``, ``run`` and ``distill`` accept the flags of ``tools/train.py`` (``--resume``, ``--amp``,
``--no-validate``, ...) after their own.

Examples::

    python tools/clusterfit.py cluster \\
        --config configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py \\
        --checkpoint work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth --k 100 \\
        --out-dir work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist
    python tools/clusterfit.py fit \\
        configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py \\
        --clusters work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist
    python tools/clusterfit.py run \\
        configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py \\
        --torchvision resnet18 --weights r18.pth --k 100
    python tools/clusterfit.py soft-targets --config CLS_CONFIG --checkpoint CLS.pth \\
        --temperature 4 --out-dir work_dirs/soft
    python tools/clusterfit.py distill \\
        configs/clusterfit/clusterfit-distill_r18-w32_1xb64-3000it_fmnist.py \\
        --soft-targets work_dirs/soft
"""
import argparse
import json
import os.path as osp
from typing import List, Optional

from mmengine.config import DictAction

import mmssl_ext  # noqa: F401  registers everything
from mmssl_ext import clusterfit as cf
from mmssl_ext.clusterfit.experiments import noise_control
from mmssl_ext.utils.config import load_config
from . import train as train_cli
from .analysis_common import publish_figures, publish_scalars, remote_vis_backends

#: the cluster step's numbers sent to a config's remote visualizer backends (TensorBoard)
SUMMARY_SCALARS = ('k', 'num_samples', 'objective', 'min_size', 'max_size',
                   'empty_clusters_reseeded', 'nmi_vs_dataset_labels')


# ------------------------------------------------------------------------------ flags
def _add_pretrained_args(p: argparse.ArgumentParser, config_flag: str = '--config',
                         kmeans: bool = True) -> None:
    g = p.add_argument_group('pretrained network N_pre (config + checkpoint, or torchvision)')
    g.add_argument(config_flag, dest='pre_config',
                   help='mmssl_ext / mmpretrain config (pkg:: paths allowed) of N_pre')
    g.add_argument('--checkpoint', help="full or backbone-only checkpoint of N_pre, or 'random'")
    g.add_argument('--torchvision', metavar='NAME', help='torchvision model name, e.g. resnet18')
    g.add_argument('--weights', help="local state-dict file for --torchvision, or 'random'")
    g.add_argument('--layer', type=int, default=-1,
                   help='ResNet stage index 0-3 to take features from (default -1: last)')
    g.add_argument('--pool', choices=['avg', 'max'], default='avg', help='global pooling')
    d = p.add_argument_group(f'images to {"cluster" if kmeans else "score"} (default: '
                             f'knn_eval.train_dataloader of the config)')
    d.add_argument('--data-config', help='config whose knn_eval.train_dataloader lists them')
    d.add_argument('--data-root', help='image folder root (CustomDataset data_root)')
    d.add_argument('--ann-file', help='annotation/list file, relative to --data-root')
    d.add_argument('--data-prefix', help='image sub-folder, e.g. train')
    d.add_argument('--unlabeled', action='store_true',
                   help='--data-root is a plain folder: every image at any depth (no class '
                        'sub-folders); unreadable files are named, counted and left out')
    d.add_argument('--img-size', type=int, default=32, help='input size with --data-root')
    d.add_argument('--crop-ratio', type=float,
                   help='with --data-root: resize the short side to size/ratio and centre-crop '
                   '(ImageNet: --img-size 224 --crop-ratio 0.875)')
    d.add_argument('--num-samples', type=int, help='only the first N images of the list')
    d.add_argument('--batch-size', type=int, help='extraction batch size')
    d.add_argument('--num-workers', type=int, help='dataloader workers')
    if not kmeans:
        return
    c = p.add_argument_group('k-means')
    c.add_argument('--k', type=int, required=True, help='number of clusters')
    c.add_argument('--niter', type=int, default=20, help='k-means iterations (default 20)')
    c.add_argument('--seed', type=int, default=0)
    c.add_argument('--pca-dim', type=int, help='PCA to this many dimensions first')
    c.add_argument('--whiten', action='store_true', help='PCA whitening')
    c.add_argument('--no-l2-normalize', action='store_true',
                   help='cluster the raw pooled features')
    c.add_argument('--save-features', action='store_true', help='also write features.npy')


def _add_noise_control_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--work-dir', default='work_dirs/clusterfit-noise-control',
                   help='every model, label file and result goes below it (resumable)')
    p.add_argument('--data-root', default='data/fashion_mnist',
                   help='ImageNet-style tree: train/, val/, meta/{train,val}.txt')
    p.add_argument('--noise', type=float, nargs='+', default=[0, 25, 50, 75],
                   help='label-noise levels in %% (default 0 25 50 75)')
    p.add_argument('--classes-a', type=int, nargs='+', default=[0, 1, 2, 3, 4],
                   help='pre-training classes (default 0-4)')
    p.add_argument('--classes-b', type=int, nargs='+',
                   help='held-out transfer classes (default: all others)')
    p.add_argument('--train-per-class', type=int, default=2000,
                   help='A images per class for pre-training (default 2000; 0: all 6000)')
    p.add_argument('--eval-train-per-class', type=int, default=1000,
                   help='B train-split images per class as kNN memory (default 1000; 0: all)')
    p.add_argument('--eval-val-per-class', type=int, default=0,
                   help='B test-split images per class as queries (default 0: all 1000)')
    b = p.add_argument_group('budget / recipe')
    b.add_argument('--config', default=noise_control.DEFAULT_CONFIG,
                   help='ImageClassifier recipe of all three networks (default, relative to the '
                   'current directory: %(default)s)')
    b.add_argument('--iters', type=int, default=600, help='iterations of N_cf and N_distill')
    b.add_argument('--pre-iters', type=int, help='iterations of N_pre (default: --iters)')
    b.add_argument('--width', type=int, default=32, help='ResNet-18 base width (default 32)')
    b.add_argument('--batch-size', type=int, default=64)
    b.add_argument('--lr', type=float, help='SGD lr (default: the config, 0.025)')
    b.add_argument('--k', type=int, default=50, help='clusters for N_cf (default 50)')
    b.add_argument('--kmeans-niter', type=int, default=20)
    b.add_argument('--temperature', type=float, default=4.0,
                   help='distillation temperature T (default 4)')
    b.add_argument('--seed', type=int, default=0, help='training / k-means seed')
    b.add_argument('--noise-seed', type=int, default=0, help='seed of the flipped labels')
    b.add_argument('--num-workers', type=int, default=2, help='dataloader workers')
    b.add_argument('--ckpt-interval', type=int, default=200,
                   help='checkpoint every N iterations (resume granularity)')
    b.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides of the recipe for all three networks')
    e = p.add_argument_group('evaluation')
    e.add_argument('--knn-k', type=int, nargs='+', default=[20, 200])
    e.add_argument('--knn-temperature', type=float, default=0.07)
    e.add_argument('--linear-probe', action='store_true',
                   help='also a logistic-regression probe on the frozen B features')
    e.add_argument('--no-random-baseline', action='store_true',
                   help='skip the random-init row')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='ClusterFit: cluster features of a pretrained '
                                'network, train a new network on the cluster ids')
    sub = p.add_subparsers(dest='command', required=True)

    pc = sub.add_parser('cluster', help='features -> k-means -> pseudo-label annotation file')
    _add_pretrained_args(pc)
    pc.add_argument('--out-dir', required=True, help='folder for train_clusters.txt etc.')
    pc.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the N_pre config (also of its knn_eval data)')
    pc.add_argument('--data-cfg-options', nargs='+', action=DictAction,
                    help='overrides of --data-config')

    pf = sub.add_parser('fit', help='train a fit config on the pseudo labels (tools/train.py)')
    pf.add_argument('config', help='fit config (an mmpretrain ImageClassifier)')
    pf.add_argument('--clusters', required=True,
                    help='output folder of the cluster step (or its train_clusters.txt)')
    pf.add_argument('--work-dir', help='default: work_dirs/<config name>')
    pf.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the fit config')

    pr = sub.add_parser('run', help='cluster -> fit -> extract backbone in one go')
    pr.add_argument('config', help='fit config; its knn_eval train split is clustered')
    _add_pretrained_args(pr, '--pretrained-config')
    pr.add_argument('--work-dir', help='default: work_dirs/<fit config name>')
    pr.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the fit config (also of its knn_eval data)')
    pr.add_argument('--pretrained-cfg-options', nargs='+', action=DictAction,
                    help='overrides of the N_pre config')

    ps = sub.add_parser(
        'soft-targets', help="N_pre's soft predictions for the distillation baseline: "
        'softmax(logits/T) of a classifier, or softmax(cos(feature, centroids)/T) with --clusters')
    _add_pretrained_args(ps, kmeans=False)
    s = ps.add_argument_group('soft targets')
    s.add_argument('--clusters', help='cluster-step folder: soft assignment to its centroids '
                   '(self-supervised N_pre; default --out-dir)')
    s.add_argument('--mode', choices=['auto', 'logits', 'centroids'], default='auto',
                   help='auto: centroids with --clusters, else logits')
    s.add_argument('--temperature', type=float,
                   help=f'softmax temperature T (default {cf.DEFAULT_SOFT_TEMPERATURE["logits"]} '
                   f'for logits, {cf.DEFAULT_SOFT_TEMPERATURE["centroids"]} for centroids)')
    s.add_argument('--dtype', choices=['float32', 'float16'], default='float32',
                   help='storage type of soft_targets.npy')
    s.add_argument('--seed', type=int, default=0)
    ps.add_argument('--out-dir', help='folder for soft_targets.npy, train_soft.txt, '
                    'soft_targets.json (default: --clusters)')
    ps.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the N_pre config (also of its knn_eval data)')
    ps.add_argument('--data-cfg-options', nargs='+', action=DictAction,
                    help='overrides of --data-config')

    pd = sub.add_parser('distill', help='train a distillation config on the soft targets '
                        '(tools/train.py; SoftLabelDataset + DistillationKLLoss)')
    pd.add_argument('config', help='distillation config, e.g. configs/clusterfit/'
                    'clusterfit-distill_r18-w32_1xb64-3000it_fmnist.py')
    pd.add_argument('--soft-targets', required=True, help='output folder of soft-targets')
    pd.add_argument('--work-dir', help='default: work_dirs/<config name>')
    pd.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the distillation config')

    pn = sub.add_parser('noise-control', help="the label-noise control experiment (paper's "
                        'Fig. 6) in miniature: N_pre vs distillation vs ClusterFit',
                        description=noise_control.__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_noise_control_args(pn)

    args, rest = p.parse_known_args(argv)
    if rest and args.command in ('cluster', 'soft-targets', 'noise-control'):
        p.error(f'unrecognized arguments: {" ".join(rest)}')
    args.train_args = rest  # fit / run / distill take tools/train.py's flags (--resume, ...)
    return args


# ------------------------------------------------------------------------------ flags -> options
def npre_spec(args: argparse.Namespace, config_flag: str = '--config',
              cfg_options: Optional[dict] = None) -> cf.NPreSpec:
    return cf.NPreSpec(config=args.pre_config, checkpoint=args.checkpoint,
                       torchvision=args.torchvision, weights=args.weights, layer=args.layer,
                       pool=args.pool, cfg_options=cfg_options, config_flag=config_flag)


def image_source(args: argparse.Namespace) -> cf.ImageSource:
    return cf.ImageSource(data_config=args.data_config,
                          data_cfg_options=getattr(args, 'data_cfg_options', None),
                          data_root=args.data_root, ann_file=args.ann_file,
                          data_prefix=args.data_prefix, img_size=args.img_size,
                          crop_ratio=args.crop_ratio, num_samples=args.num_samples,
                          batch_size=args.batch_size, num_workers=args.num_workers,
                          unlabeled=args.unlabeled)


def kmeans_options(args: argparse.Namespace) -> cf.KMeansOptions:
    return cf.KMeansOptions(k=args.k, niter=args.niter, seed=args.seed, pca_dim=args.pca_dim,
                            whiten=args.whiten, l2_normalize=not args.no_l2_normalize,
                            save_features=args.save_features)


def train_options(config: str, work_dir: Optional[str], cfg_options: Optional[dict],
                  train_args: Optional[List[str]] = None) -> cf.TrainOptions:
    """``--work-dir``, ``--cfg-options`` and the ``tools/train.py`` flags in ``train_args``."""
    t = train_cli.parse_args([config] + list(train_args or []))
    return cf.TrainOptions(work_dir=work_dir, cfg_options=cfg_options, resume=t.resume,
                           amp=t.amp, no_validate=t.no_validate, auto_scale_lr=t.auto_scale_lr,
                           no_pin_memory=t.no_pin_memory,
                           no_persistent_workers=t.no_persistent_workers, launcher=t.launcher,
                           channels_last=t.channels_last)


def _train_options(args: argparse.Namespace) -> cf.TrainOptions:
    return train_options(args.config, args.work_dir, args.cfg_options, args.train_args)


def run_noise_control(args: argparse.Namespace) -> dict:
    return noise_control.NoiseControl(
        args.work_dir, args.data_root, args.noise, args.classes_a, args.classes_b,
        args.train_per_class or None, args.eval_train_per_class or None,
        args.eval_val_per_class or None, args.config, args.width, args.batch_size, args.lr,
        args.iters, args.pre_iters, args.k, args.kmeans_niter, args.temperature, args.seed,
        args.noise_seed, args.knn_k, args.knn_temperature, args.linear_probe,
        not args.no_random_baseline, args.num_workers, args.ckpt_interval,
        args.cfg_options).run()


def _print_trained(what: str, out: dict) -> None:
    print(f'{what}: checkpoint {out["checkpoint"]}\n'
          f'backbone: python tools/extract_backbone.py {out["checkpoint"]} '
          f'{osp.join(out["work_dir"], cf.BACKBONE_FILE)}')


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.command == 'cluster':
        summary = cf.cluster(args.out_dir, npre_spec(args, cfg_options=args.cfg_options),
                             image_source(args), kmeans_options(args))
        publish_summary([args.pre_config, args.data_config], args.out_dir, summary)
        return summary
    if args.command == 'fit':
        out = cf.fit(args.config, args.clusters, _train_options(args))
        _print_trained('fit step done', out)
        return out
    if args.command == 'soft-targets':
        options = cf.SoftTargetOptions(clusters=args.clusters, mode=args.mode,
                                       temperature=args.temperature, dtype=args.dtype,
                                       seed=args.seed)
        return cf.soft_targets(args.out_dir, npre_spec(args, cfg_options=args.cfg_options),
                               image_source(args), options)
    if args.command == 'distill':
        out = cf.distill(args.config, args.soft_targets, _train_options(args))
        _print_trained(f'distillation done (T={out["temperature"]})', out)
        return out
    if args.command == 'noise-control':
        results = run_noise_control(args)
        plot = osp.join(args.work_dir, 'results.png')
        if osp.isfile(plot):
            publish_figures(load_config(args.config), args.work_dir, [plot])
        return results
    # run
    npre = npre_spec(args, '--pretrained-config', args.pretrained_cfg_options)
    out = cf.run(args.config, npre, kmeans_options(args), image_source(args),
                 _train_options(args))
    with open(out['summary']) as f:
        publish_summary([args.config, args.pre_config, args.data_config],
                        osp.dirname(out['summary']), json.load(f))
    print_artefacts(args.config, out)
    return out


def publish_summary(configs: List[Optional[str]], out_dir: str, summary: dict) -> int:
    """The cluster step's numbers (:data:`SUMMARY_SCALARS`, as ``clusterfit/<name>``) to the
    remote visualizer backends of the first of ``configs`` that has any; returns how many."""
    for config in configs:
        cfg = load_config(config) if config else None
        if cfg is not None and remote_vis_backends(cfg):
            return publish_scalars(cfg, out_dir, {f'clusterfit/{k}': summary.get(k)
                                                  for k in SUMMARY_SCALARS})
    return 0


def print_artefacts(config: str, out: dict) -> None:
    """What ``run`` wrote, and how to evaluate its backbone."""
    print('ClusterFit artefacts:')
    for key in ('ann_file', 'centroids', 'summary', 'checkpoint', 'backbone'):
        print(f'  {key:<11} {out[key]}')
    print(f'evaluate: python tools/knn_eval.py {config} {out["backbone"]} --baseline')
