"""ClusterFit's label-noise control experiment in miniature (``tools/clusterfit.py noise-control``).

The paper (Yan et al. 2020, Fig. 6) trains N_pre on ImageNet-1K with p% of the labels
replaced, and compares how three networks transfer to ImageNet-9K: N_pre itself, N_distill
(trained from scratch on N_pre's soft predictions) and N_cf (trained from scratch on k-means
cluster ids of N_pre's features).  Here, on Fashion-MNIST, with a held-out task:

* pre-training classes A (default 0-4: T-shirt/top, Trouser, Pullover, Dress, Coat) of the train
  split; transfer classes B (default 5-9: Sandal, Shirt, Sneaker, Bag, Ankle boot), never seen in
  any training;
* for each noise level p: (a) p% of the A labels are replaced by a uniformly drawn *other* class
  of A (exactly round(p N / 100) of them; the flipped samples and their new labels come from
  ``--noise-seed`` alone, so the levels are nested); (b) N_pre is trained on them (an
  mmpretrain ImageClassifier, |A| classes); (c) one pass of N_pre over the A images gives pooled
  features, k-means'd into K clusters, and logits; N_cf is trained from scratch on the cluster
  ids; (d) N_distill is trained from scratch on softmax(logits / T) with Hinton's KD loss;
  (e) N_pre, N_distill and N_cf are evaluated by weighted kNN on B (train-split images of B as
  the memory, test-split images of B as the queries; optionally a linear probe on the same
  frozen features);
* ``results.json``, ``results.md`` (rows p, columns N_pre / N_distill / N_cf) and
  ``results.png`` (the Fig. 6 plot, if matplotlib is installed) in ``--work-dir``.

All three networks use the same recipe (``--config``, default
``configs/clusterfit/clusterfit-noise-control_r18-w32_1xb64-600it_fmnist.py``, relative to the
current directory like every OpenMMLab tool's configs: run from the repository root).  Every
model has its own work dir; a re-run skips finished steps (a step is finished when its ``done.json``
exists), resumes an interrupted training from its last checkpoint, and refuses to mix in results
of other training settings (``settings.json``).

Example (run time and results: configs/clusterfit/README.md)::

    python tools/clusterfit.py noise-control --work-dir work_dirs/clusterfit-noise-control \\
        --noise 0 25 50 75 --iters 600 --k 50 --train-per-class 2000
"""
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mmssl_ext import evaluation
from mmssl_ext.datasets.subset import read_annotation
from mmssl_ext.utils.checkpoint import load_backbone_weights
from mmssl_ext.utils.config import build_dataloader, build_model, load_config
from .. import formats
from ..cluster_step import cluster_features
from ..fit_step import prepare_config, train_config
from ..images import build_image_loader
from ..networks import build_classifier
from ..options import ImageSource, KMeansOptions, TrainOptions
from ..soft_target_step import extract_logits, softmax_rows, write_soft_targets

#: the recipe of all three networks, relative to the current directory (the repository root)
DEFAULT_CONFIG = 'configs/clusterfit/clusterfit-noise-control_r18-w32_1xb64-600it_fmnist.py'
#: the linear probe's L2 penalty on W (``weight_decay * ||W||^2``) and L-BFGS iterations
PROBE_WEIGHT_DECAY = 1e-4
PROBE_MAX_ITER = 300
MODELS_ORDER = ('pre', 'distill', 'cf')
MODEL_NAMES = dict(pre='N_pre', distill='N_distill', cf='N_cf', random='random init')
DONE = 'done.json'


# ------------------------------------------------------------------------------ label noise
def inject_label_noise(labels: Sequence[int], rate: float, num_classes: int,
                       seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Replace exactly ``round(rate * N)`` labels by a uniformly drawn *other* class.

    The samples to flip are the first ``m`` of one random permutation and each sample's new
    class is ``(y + r) mod C`` with its own ``r`` uniform in ``1..C-1``; both depend on ``seed``
    only, so the flipped set at a lower rate is a subset of the one at a higher rate.

    Returns:
        ``(noisy labels, flipped mask)``; ``noisy[i] != labels[i]`` exactly where flipped.

    Raises:
        ValueError: rate outside [0, 1], labels outside ``[0, num_classes)``, or fewer than
            two classes with a positive rate.
    """
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1:
        raise ValueError(f'labels must be 1-D, got shape {y.shape}')
    if not 0 <= rate <= 1:
        raise ValueError(f'noise rate must be in [0, 1], got {rate}')
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(np.flatnonzero((y < 0) | (y >= num_classes))[0])
        raise ValueError(f'label {int(y[bad])} (sample {bad}) is outside [0, {num_classes})')
    m = int(round(rate * len(y)))
    if m and num_classes < 2:
        raise ValueError(f'cannot flip labels to another class with num_classes={num_classes}')
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    offsets = rng.integers(1, max(num_classes, 2), size=len(y))
    flipped = np.zeros(len(y), dtype=bool)
    flipped[order[:m]] = True
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + offsets[flipped]) % num_classes
    return noisy, flipped


def noise_report(clean: np.ndarray, noisy: np.ndarray, num_classes: int, rate: float) -> dict:
    """Requested vs realised noise, per class, and the clean -> noisy confusion matrix."""
    flipped = clean != noisy
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(conf, (clean, noisy), 1)
    per_class = [round(float(flipped[clean == c].mean()), 4) if (clean == c).any() else None
                 for c in range(num_classes)]
    return dict(requested_rate=rate, realised_rate=round(float(flipped.mean()), 6),
                num_flipped=int(flipped.sum()), num_samples=int(len(clean)),
                realised_rate_per_class=per_class, confusion_clean_to_noisy=conf.tolist())


# ------------------------------------------------------------------------------ data lists
def read_list(path: str) -> Tuple[List[str], np.ndarray]:
    """``(paths, labels)`` of a ``path label`` annotation file."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} does not exist: --data-root must hold meta/train.txt '
                                f'and meta/val.txt (tools/prepare_data.py writes them)')
    rows = read_annotation(path)
    paths, labels = [p for p, _ in rows], [label for _, label in rows]
    return paths, np.asarray(labels, dtype=np.int64)


def select(labels: np.ndarray, classes: Sequence[int], per_class: Optional[int],
           what: str) -> np.ndarray:
    """Indices of the first ``per_class`` samples (file order) of each class in ``classes``."""
    keep = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) == 0:
            raise ValueError(f'{what}: class {c} has no images')
        keep.append(idx[:per_class] if per_class else idx)
    return np.sort(np.concatenate(keep))


def _load(path: str):
    with open(path) as f:
        return json.load(f)


def level_name(p: float) -> str:
    """``noise_00``, ``noise_25``, ``noise_12.5``."""
    return f'noise_{int(p):02d}' if float(p).is_integer() else f'noise_{p:g}'


# ------------------------------------------------------------------------------ the experiment
class NoiseControl:
    """The experiment's steps; :meth:`run` does them all (skipping finished ones)."""

    TRAIN_KEYS = ('data_root', 'classes_a', 'classes_b', 'train_per_class', 'config', 'width',
                  'batch_size', 'lr', 'pre_iters', 'iters', 'k', 'kmeans_niter', 'temperature',
                  'seed', 'noise_seed', 'cfg_options')
    EVAL_KEYS = ('eval_train_per_class', 'eval_val_per_class', 'knn_k', 'knn_temperature',
                 'linear_probe')

    def __init__(self, work_dir: str, data_root: str = 'data/fashion_mnist',
                 noise: Sequence[float] = (0, 25, 50, 75),
                 classes_a: Sequence[int] = (0, 1, 2, 3, 4),
                 classes_b: Optional[Sequence[int]] = None,
                 train_per_class: Optional[int] = 2000,
                 eval_train_per_class: Optional[int] = 1000,
                 eval_val_per_class: Optional[int] = None,
                 config: str = DEFAULT_CONFIG, width: int = 32, batch_size: int = 64,
                 lr: Optional[float] = None, iters: int = 600, pre_iters: Optional[int] = None,
                 k: int = 50, kmeans_niter: int = 20, temperature: float = 4.0,
                 seed: int = 0, noise_seed: int = 0, knn_k: Sequence[int] = (20, 200),
                 knn_temperature: float = 0.07, linear_probe: bool = False,
                 random_baseline: bool = True, num_workers: int = 2,
                 ckpt_interval: int = 200, cfg_options: Optional[dict] = None,
                 progress: bool = True):
        if '::' not in config and not osp.isfile(config):
            raise FileNotFoundError(
                f'--config {config}: no such file; the default recipe is relative to the current '
                f'directory (run from the repository root) or pass --config PATH')
        self.work_dir = osp.abspath(work_dir)  # its lists are read relative to data_root
        self.progress = progress
        self.num_workers = int(num_workers)
        self.ckpt_interval = int(ckpt_interval)
        self.random_baseline = random_baseline
        self.noise = [float(p) for p in noise]
        for p in self.noise:
            if not 0 <= p <= 100:
                raise ValueError(f'--noise levels are percentages in [0, 100], got {p}')
        if len(set(self.noise)) != len(self.noise):
            raise ValueError(f'--noise levels repeat: {noise}')
        classes_a = [int(c) for c in classes_a]
        all_classes = sorted(set(read_list(osp.join(data_root, 'meta', 'train.txt'))[1]))
        if classes_b is None:
            classes_b = [c for c in all_classes if c not in classes_a]
        classes_b = [int(c) for c in classes_b]
        if set(classes_a) & set(classes_b):
            raise ValueError(f'classes A {classes_a} and B {classes_b} overlap: the transfer '
                             f'task must be held out')
        if len(classes_a) < 2 or len(classes_b) < 2:
            raise ValueError(f'need at least 2 classes in A and in B, got A={classes_a}, '
                             f'B={classes_b}')
        missing = sorted(set(classes_a + classes_b) - set(all_classes))
        if missing:
            raise ValueError(f'classes {missing} do not occur in {data_root}/meta/train.txt')
        for name, v in (('--iters', iters), ('--pre-iters', pre_iters or iters),
                        ('--width', width), ('--batch-size', batch_size), ('--k', k)):
            if int(v) < 1:
                raise ValueError(f'{name} must be >= 1, got {v}')
        if not temperature > 0:
            raise ValueError(f'--temperature must be positive, got {temperature}')
        self.settings = dict(
            data_root=osp.abspath(data_root), classes_a=classes_a, classes_b=classes_b,
            train_per_class=train_per_class, config=osp.abspath(config) if '::' not in config
            else config, width=int(width), batch_size=int(batch_size), lr=lr, iters=int(iters),
            pre_iters=int(pre_iters or iters), k=int(k), kmeans_niter=int(kmeans_niter),
            temperature=float(temperature), seed=int(seed), noise_seed=int(noise_seed),
            cfg_options=cfg_options or {},
            eval_train_per_class=eval_train_per_class, eval_val_per_class=eval_val_per_class,
            knn_k=sorted(int(x) for x in knn_k), knn_temperature=float(knn_temperature),
            linear_probe=bool(linear_probe))
        self.timings: Dict[str, float] = {}

    # -- helpers
    def log(self, msg: str) -> None:
        if self.progress:
            print(f'[noise-control] {msg}', flush=True)

    def path(self, *parts) -> str:
        return osp.join(self.work_dir, *parts)

    def _check_settings(self) -> None:
        """A work dir holds ONE training setting; eval settings may change (re-evaluated)."""
        path = self.path('settings.json')
        train = {k: self.settings[k] for k in self.TRAIN_KEYS}
        if osp.isfile(path):
            old = _load(path)
            diff = [f'{k}: {old.get(k)!r} there, {train[k]!r} now' for k in self.TRAIN_KEYS
                    if json.loads(json.dumps(train[k])) != old.get(k)]
            if diff:
                raise ValueError(f'{self.work_dir} holds a run with other training settings '
                                 f'({"; ".join(diff)}); use another --work-dir, or the same '
                                 f'flags to resume it')
        else:
            formats.write_json(path, train)

    # -- step 0: data lists
    def prepare_data(self) -> dict:
        s = self.settings
        done = self.path('data', 'split.json')
        if osp.isfile(done):
            split = _load(done)
            if split['eval'] == dict(train_per_class=s['eval_train_per_class'],
                                     val_per_class=s['eval_val_per_class']):
                return split
        root = s['data_root']
        tr_paths, tr_labels = read_list(osp.join(root, 'meta', 'train.txt'))
        va_paths, va_labels = read_list(osp.join(root, 'meta', 'val.txt'))
        a_map = {c: i for i, c in enumerate(s['classes_a'])}
        b_map = {c: i for i, c in enumerate(s['classes_b'])}
        ia = select(tr_labels, s['classes_a'], s['train_per_class'], 'train split, classes A')
        ib = select(tr_labels, s['classes_b'], s['eval_train_per_class'],
                    'train split, classes B (kNN memory)')
        iq = select(va_labels, s['classes_b'], s['eval_val_per_class'],
                    'val split, classes B (kNN queries)')
        formats.write_annotation(self.path('data', 'train_A.txt'), [tr_paths[i] for i in ia],
                                 [a_map[int(tr_labels[i])] for i in ia])
        formats.write_annotation(self.path('data', 'memory_B.txt'), [tr_paths[i] for i in ib],
                                 [b_map[int(tr_labels[i])] for i in ib])
        formats.write_annotation(self.path('data', 'query_B.txt'), [va_paths[i] for i in iq],
                                 [b_map[int(va_labels[i])] for i in iq])
        names = self._class_names(root)
        split = dict(classes_a=s['classes_a'], classes_b=s['classes_b'],
                     names_a=[names.get(c, str(c)) for c in s['classes_a']],
                     names_b=[names.get(c, str(c)) for c in s['classes_b']],
                     num_train_a=int(len(ia)), num_memory_b=int(len(ib)),
                     num_query_b=int(len(iq)),
                     eval=dict(train_per_class=s['eval_train_per_class'],
                               val_per_class=s['eval_val_per_class']),
                     note='labels in the lists are re-indexed: A -> 0..|A|-1, B -> 0..|B|-1')
        formats.write_json(done, split)
        return split

    @staticmethod
    def _class_names(root: str) -> Dict[int, str]:
        path = osp.join(root, 'meta', 'classes.txt')
        if not osp.isfile(path):
            return {}
        with open(path) as f:
            return {i: line.strip() for i, line in enumerate(f) if line.strip()}

    # -- step (a): noisy labels
    def noisy_labels(self, p: float) -> dict:
        out = self.path(level_name(p), 'labels')
        done = osp.join(out, 'noise.json')
        if osp.isfile(done):
            return _load(done)
        paths, clean = read_list(self.path('data', 'train_A.txt'))
        num_a = len(self.settings['classes_a'])
        noisy, _ = inject_label_noise(clean, p / 100, num_a, self.settings['noise_seed'])
        formats.write_annotation(osp.join(out, 'train_A_noisy.txt'), paths, noisy)
        report = noise_report(clean, noisy, num_a, p / 100)
        report['ann_file'] = osp.abspath(osp.join(out, 'train_A_noisy.txt'))
        formats.write_json(done, report)
        self.log(f'{level_name(p)}: {report["num_flipped"]} of {report["num_samples"]} labels '
                 f'flipped (realised rate {report["realised_rate"]:.4f})')
        return report

    # -- training
    def _train_opts(self, name: str, ann_file: str, num_classes: int, iters: int,
                    soft_targets: Optional[str] = None) -> dict:
        s = self.settings
        warmup = min(100, max(1, iters // 10))
        opts = {
            'experiment_name': f'clusterfit-noise-control-{name}',
            'train_dataloader.dataset.type': 'SoftLabelDataset' if soft_targets
            else 'CustomDataset',
            'train_dataloader.dataset.ann_file': osp.abspath(ann_file),
            'train_dataloader.dataset.data_root': s['data_root'],
            'train_dataloader.dataset.data_prefix': 'train',
            'train_dataloader.batch_size': s['batch_size'],
            'train_dataloader.num_workers': self.num_workers,
            'model.backbone.stem_channels': s['width'],
            'model.backbone.base_channels': s['width'],
            'model.head.in_channels': 8 * s['width'],
            'model.head.num_classes': int(num_classes),
            'model.data_preprocessor.num_classes': int(num_classes),
            'train_cfg.max_iters': int(iters),
            'param_scheduler': [
                dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup),
                dict(type='CosineAnnealingLR', T_max=max(1, iters - warmup), by_epoch=False,
                     begin=warmup, end=iters)],
            'default_hooks.checkpoint.interval': min(self.ckpt_interval, int(iters)),
            'default_hooks.checkpoint.max_keep_ckpts': 1,
            'randomness.seed': s['seed'],
        }
        if soft_targets:
            opts['train_dataloader.dataset.soft_targets'] = osp.abspath(soft_targets)
            opts['model.head.loss'] = dict(_delete_=True, type='DistillationKLLoss',
                                           temperature=s['temperature'])
        if s['lr'] is not None:
            opts['optim_wrapper.optimizer.lr'] = float(s['lr'])
        opts.update(s['cfg_options'])
        return opts

    def train(self, p: float, model: str, ann_file: str, num_classes: int, iters: int,
              soft_targets: Optional[str] = None) -> dict:
        """Train one model into ``<level>/<model>/`` unless its ``done.json`` exists."""
        work = self.path(level_name(p), model)
        done = osp.join(work, DONE)
        if osp.isfile(done):
            return _load(done)
        opts = self._train_opts(f'{level_name(p)}-{model}', ann_file, num_classes, iters,
                                soft_targets)
        resume = osp.isfile(osp.join(work, 'last_checkpoint'))
        self.log(f'{level_name(p)}: training {MODEL_NAMES[model]} ({num_classes} classes, '
                 f'{iters} iterations){" - resuming" if resume else ""} -> {work}')
        t = time.perf_counter()
        config = self.settings['config']
        out = train_config(prepare_config(config, opts, TrainOptions(
            work_dir=work, resume='auto' if resume else None)))
        seconds = time.perf_counter() - t
        ckpt = out['checkpoint']
        if ckpt is None or not osp.isfile(ckpt) or not ckpt.endswith(f'iter_{iters}.pth'):
            raise RuntimeError(f'training {work} ended without iter_{iters}.pth (last '
                               f'checkpoint: {ckpt})')
        info = dict(model=MODEL_NAMES[model], checkpoint=osp.abspath(ckpt),
                    num_classes=int(num_classes), iters=int(iters),
                    ann_file=osp.abspath(ann_file), train_s=round(seconds, 1),
                    cfg_options={k: v for k, v in opts.items() if k != 'param_scheduler'})
        formats.write_json(done, info)
        return info

    def model_cfg(self, num_classes: int):
        """The recipe's config with the width and number of classes of this run."""
        cfg = load_config(self.settings['config'])
        opts = self._train_opts('probe', self.path('data', 'train_A.txt'), num_classes,
                                self.settings['iters'])
        cfg.merge_from_dict(opts)
        return cfg

    # -- steps (c)/(d): targets from one pass of N_pre over the A images
    def targets(self, p: float, pre: dict) -> Tuple[dict, dict]:
        level = self.path(level_name(p))
        clusters_dir, soft_dir = osp.join(level, 'clusters'), osp.join(level, 'soft')
        c_done = osp.join(clusters_dir, formats.SUMMARY_FILE)
        s_done = osp.join(soft_dir, formats.SOFT_SUMMARY_FILE)
        if osp.isfile(c_done) and osp.isfile(s_done):
            return _load(c_done), _load(s_done)
        from mmengine.registry import DefaultScope
        s = self.settings
        num_a = len(s['classes_a'])
        t = time.perf_counter()
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model, source = build_classifier(
                s['config'], pre['checkpoint'],
                cfg_options=self._train_opts('probe', self.path('data', 'train_A.txt'), num_a,
                                             s['pre_iters']), seed=s['seed'])
            images = build_image_loader(ImageSource(
                data_root=s['data_root'], ann_file=self.path('data', 'train_A.txt'),
                data_prefix='train', img_size=32, batch_size=256,
                num_workers=self.num_workers), seed=s['seed'])
            self.log(f'{level_name(p)}: features + logits of {len(images.dataset)} A images '
                     f'with N_pre')
            feats, logits, clean = extract_logits(model, images.loader,
                                                  progress=self.progress)
        t_extract = time.perf_counter() - t
        noisy = read_list(self.path(level_name(p), 'labels', 'train_A_noisy.txt'))[1]
        source['train_acc_clean'] = round(float((logits.argmax(1) == clean).mean()), 4)
        source['train_acc_noisy_labels'] = round(float((logits.argmax(1) == noisy).mean()), 4)
        if not osp.isfile(c_done):
            cluster_features(clusters_dir, feats,
                             KMeansOptions(k=s['k'], niter=s['kmeans_niter'], seed=s['seed']),
                             images, source, timings=dict(extract_s=round(t_extract, 2)),
                             progress=self.progress)
        if not osp.isfile(s_done):
            probs = softmax_rows(logits, s['temperature'])
            summary = dict(mode='logits', temperature=s['temperature'], source=source,
                           data=images.summary(),
                           argmax_vs_dataset_labels=round(float(
                               (probs.argmax(1) == clean).mean()), 4),
                           timings=dict(extract_s=round(t_extract, 2)))
            write_soft_targets(soft_dir, probs, images.rel_paths, summary,
                               progress=self.progress)
        return _load(c_done), _load(s_done)

    # -- step (e): evaluation on B
    def _eval_loaders(self):
        if getattr(self, '_loaders', None) is None:
            pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32)),
                        dict(type='PackInputs')]

            def loader(ann, prefix):
                return build_dataloader(dict(
                    batch_size=256, num_workers=self.num_workers, persistent_workers=False,
                    sampler=dict(type='DefaultSampler', shuffle=False),
                    collate_fn=dict(type='default_collate'),
                    dataset=dict(type='CustomDataset', data_root=self.settings['data_root'],
                                 data_prefix=prefix, ann_file=osp.abspath(ann),
                                 pipeline=pipeline)), seed=0)
            self._loaders = (loader(self.path('data', 'memory_B.txt'), 'train'),
                             loader(self.path('data', 'query_B.txt'), 'val'))
        return self._loaders

    def _eval_settings(self) -> dict:
        return {k: self.settings[k] for k in self.EVAL_KEYS}

    def evaluate(self, out_json: str, num_classes: int, checkpoint: Optional[str],
                 name: str) -> dict:
        """kNN (+ linear probe) on B of the backbone in ``checkpoint`` (None: random init)."""
        if osp.isfile(out_json):
            res = _load(out_json)
            if res.get('eval_settings') == json.loads(json.dumps(self._eval_settings())):
                return res
        from mmengine.registry import DefaultScope
        s = self.settings
        t = time.perf_counter()
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = build_model(self.model_cfg(num_classes), s['seed'])
            if checkpoint is not None:
                load_backbone_weights(model, checkpoint)
            memory, queries = self._eval_loaders()
            self.log(f'evaluating {name}: kNN of {len(queries.dataset)} B queries against '
                     f'{len(memory.dataset)} B memory images')
            mf, my = evaluation.extract_features(model, memory, progress=self.progress)
            qf, qy = evaluation.extract_features(model, queries, progress=self.progress)
        if max(s['knn_k']) > len(mf):
            raise ValueError(f'--knn-k {max(s["knn_k"])} exceeds the {len(mf)} memory images '
                             f'of B (--eval-train-per-class)')
        res = dict(evaluation.knn_evaluate(mf, my, qf, qy, ks=s['knn_k'], topk=(1, ),
                                           temperature=s['knn_temperature']))
        if s['linear_probe']:
            # evaluation's probe penalises weight_decay / 2 * ||W||^2
            res['linear_top1'] = evaluation.linear_probe(
                mf, my, qf, qy, weight_decay=2 * PROBE_WEIGHT_DECAY, max_iter=PROBE_MAX_ITER)
        res = {k: round(v, 2) for k, v in res.items()}
        res.update(checkpoint=checkpoint, eval_settings=self._eval_settings(),
                   eval_s=round(time.perf_counter() - t, 1))
        formats.write_json(out_json, res)
        return res

    # -- everything
    def run(self) -> dict:
        t_all = time.perf_counter()
        os.makedirs(self.work_dir, exist_ok=True)
        self._check_settings()
        s = self.settings
        split = self.prepare_data()
        self.log(f'A = {split["names_a"]} ({split["num_train_a"]} train images), B = '
                 f'{split["names_b"]} ({split["num_memory_b"]} memory / {split["num_query_b"]} '
                 f'query images); noise levels {self.noise} %')
        num_a = len(s['classes_a'])
        if s['k'] > split['num_train_a']:
            raise ValueError(f'--k {s["k"]} exceeds the {split["num_train_a"]} A images')
        levels = {}
        for p in self.noise:
            name = level_name(p)
            noise = self.noisy_labels(p)
            pre = self.train(p, 'pre', noise['ann_file'], num_a, s['pre_iters'])
            csum, ssum = self.targets(p, pre)
            cf = self.train(p, 'cf', self.path(name, 'clusters', formats.ANN_FILE), s['k'],
                            s['iters'])
            distill = self.train(p, 'distill', self.path(name, 'soft', formats.SOFT_ANN_FILE),
                                 num_a, s['iters'],
                                 soft_targets=self.path(name, 'soft', formats.SOFT_TARGETS_FILE))
            evals = {}
            for model, info in (('pre', pre), ('distill', distill), ('cf', cf)):
                evals[model] = self.evaluate(self.path(name, f'eval_{model}.json'),
                                             info['num_classes'], info['checkpoint'],
                                             f'{MODEL_NAMES[model]} at {p:g}% noise')
            levels[name] = dict(
                noise_percent=p, realised_noise=noise['realised_rate'],
                num_flipped=noise['num_flipped'],
                pre_train_acc_clean=csum['source'].get('train_acc_clean'),
                pre_train_acc_noisy=csum['source'].get('train_acc_noisy_labels'),
                clusters_nmi_vs_clean=csum.get('nmi_vs_dataset_labels'),
                clusters_empty_reseeded=csum.get('empty_clusters_reseeded'),
                soft_mean_max_prob=ssum.get('mean_max_prob'),
                train_s={m: i['train_s'] for m, i in (('pre', pre), ('cf', cf),
                                                      ('distill', distill))},
                **{m: {k: v for k, v in e.items() if k not in ('eval_settings', 'checkpoint')}
                   for m, e in evals.items()})
        random = None
        if self.random_baseline:
            random = self.evaluate(self.path('random', 'eval.json'), num_a, None, 'random init')
            random = {k: v for k, v in random.items() if k not in ('eval_settings',
                                                                   'checkpoint')}
        results = dict(settings=s, split=split, levels=levels, random_init=random,
                       wall_s=round(time.perf_counter() - t_all, 1))
        formats.write_json(self.path('results.json'), results)
        with open(self.path('results.md'), 'w') as f:
            f.write(format_markdown(results))
        plot = plot_results(results, self.path('results.png'))
        if plot is not None:
            self.log(plot)
        self.log(f'results -> {self.path("results.json")}, {self.path("results.md")}')
        if self.progress:
            print(format_markdown(results))
        return results


# ------------------------------------------------------------------------------ report
def _metric_keys(results: dict) -> List[Tuple[str, str]]:
    keys = [(f'k{k}_top1', f'kNN top-1, k={k}') for k in results['settings']['knn_k']]
    if results['settings']['linear_probe']:
        keys.append(('linear_top1', 'linear probe top-1'))
    return keys


def format_markdown(results: dict) -> str:
    s, split = results['settings'], results['split']
    lines = [
        '# ClusterFit label-noise control experiment (Fashion-MNIST, miniature)', '',
        f'N_pre trained on classes A = {", ".join(split["names_a"])} '
        f'({split["num_train_a"]} train images) with p% of the labels replaced by another '
        f'class of A; N_cf on K={s["k"]} k-means clusters of N_pre\'s features; N_distill on '
        f'softmax(N_pre logits / {s["temperature"]:g}).  Transfer: weighted kNN (T='
        f'{s["knn_temperature"]:g}) on the held-out classes B = {", ".join(split["names_b"])} '
        f'({split["num_memory_b"]} train-split images as memory, {split["num_query_b"]} '
        f'test-split images as queries).  ResNet-18 width {s["width"]}, batch '
        f'{s["batch_size"]}, N_pre {s["pre_iters"]} / N_cf, N_distill {s["iters"]} iterations, '
        f'seed {s["seed"]}.', '']
    for key, title in _metric_keys(results):
        lines += [f'## {title} on B (%)', '',
                  '| label noise p (realised) | N_pre | N_distill | N_cf |', '|---|---|---|---|']
        for lv in results['levels'].values():
            row = [lv[m].get(key) for m in MODELS_ORDER]
            best = max(v for v in row if v is not None)
            cells = [f'**{v:.2f}**' if v == best else f'{v:.2f}' for v in row]
            lines.append(f'| {lv["noise_percent"]:g} % ({100 * lv["realised_noise"]:.2f} %) | '
                         + ' | '.join(cells) + ' |')
        lines.append('')
        if results.get('random_init') and key in results['random_init']:
            lines += [f'Randomly initialised backbone of the same architecture, same protocol: '
                      f'{results["random_init"][key]:.2f}.', '']
    lines += ['## Diagnostics', '',
              '| p | N_pre train acc. (clean / noisy labels) | NMI(clusters, clean labels) | '
              'soft targets: mean max prob. | training s (N_pre / N_distill / N_cf) |',
              '|---|---|---|---|---|']
    for lv in results['levels'].values():
        t = lv['train_s']
        lines.append(f'| {lv["noise_percent"]:g} % | {lv["pre_train_acc_clean"]} / '
                     f'{lv["pre_train_acc_noisy"]} | {lv["clusters_nmi_vs_clean"]} | '
                     f'{lv["soft_mean_max_prob"]} | {t["pre"]} / {t["distill"]} / {t["cf"]} |')
    lines.append('')
    return '\n'.join(lines)


def plot_results(results: dict, path: str) -> Optional[str]:
    """The Fig. 6 plot (transfer accuracy vs label noise); skipped without matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return 'matplotlib is not installed: results.png skipped (results.md has the numbers)'
    keys = _metric_keys(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    levels = list(results['levels'].values())
    x = [lv['noise_percent'] for lv in levels]
    colors = dict(pre='#e377c2', distill='#1f77b4', cf='#2ca02c')
    for ax, (key, title) in zip(axes[0], keys):
        for m in MODELS_ORDER:
            ax.plot(x, [lv[m][key] for lv in levels], 'o-', color=colors[m],
                    label=MODEL_NAMES[m])
        if results.get('random_init') and key in results['random_init']:
            ax.axhline(results['random_init'][key], color='gray', ls='--', lw=1,
                       label='random init')
        ax.set_xlabel('label noise on A (%)')
        ax.set_ylabel(f'{title} on B (%)')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle('ClusterFit control experiment (Fashion-MNIST, held-out classes)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f'plot -> {path}'
