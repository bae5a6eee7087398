"""``tools/knn_eval.py CONFIG CHECKPOINT``: weighted-kNN top-1/top-5 of a backbone.

The data come from the config's ``knn_eval`` section (our ``configs/_base_/datasets/
fmnist_knn.py`` defines one for Fashion-MNIST)::

    knn_eval = dict(train_dataloader=..., val_dataloader=..., ks=(20, 200), temperature=0.07)

or from labelled folders (one sub-folder of images per class): ``--train-folder DIR/train
--val-folder DIR/val``, or the short form of the unlabeled-folder configs
(``configs/_base_/datasets/folder_unlabeled.py``), ``--cfg-options knn_eval.data_root=DIR``.

CHECKPOINT is a full training checkpoint (``backbone.*`` keys) or a backbone-only file from
``tools/extract_backbone.py``; ``random`` evaluates a randomly initialised model; ``--baseline``
adds the random-init numbers, measured with the same protocol, to the report.  Of a
teacher-student checkpoint the backbone its method's authors evaluate is used (DINO: the EMA
teacher; MoCo, BYOL: the student), ``--weights teacher|student`` picks the other; the output
names the one used.  ``--representation NAME`` evaluates another representation of a model
that has several (LooC: ``embeddings``, the concatenated embedding spaces, or
``backbone+embeddings``) from the full training checkpoint.

``--holdout N`` chooses between models without test labels: the last N images of the kNN memory
(the training set) become the queries and the rest the memory; the test set is not read.
"""
import argparse
import copy
import json
import os
import os.path as osp
from typing import Dict, List, Optional

import torch
from mmengine.config import Config, DictAction

import mmssl_ext  # noqa: F401  registers everything
from mmssl_ext.datasets.folder import folder_knn_section
from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.evaluation.knn import knn_evaluate
# build_model / load_backbone_weights lived here before utils: kept importable from here
from mmssl_ext.utils.checkpoint import WEIGHTS_CHOICES, load_backbone_weights  # noqa: F401
from mmssl_ext.utils.checkpoint import load_checkpoint_safe, state_dict_of
from mmssl_ext.utils.config import build_dataloader, build_model, load_config


def _knn_cfg(cfg: Config, config_path: str, train_folder: Optional[str] = None,
             val_folder: Optional[str] = None) -> Config:
    """The config's ``knn_eval`` section with its loaders; ``train_folder`` / ``val_folder``
    (labelled folders, one sub-folder per class) replace its data."""
    knn = cfg.get('knn_eval', None)
    if (train_folder is None) != (val_folder is None):
        raise ValueError('--train-folder and --val-folder go together: the kNN memory and the '
                         'queries, each a folder with one sub-folder of images per class')
    if knn is None and train_folder is None:
        raise KeyError(f'{config_path} has no `knn_eval` section. Inherit '
                       f"'configs/_base_/datasets/fmnist_knn.py' (Fashion-MNIST), define "
                       f'knn_eval=dict(train_dataloader=..., val_dataloader=...), or pass '
                       f'labelled folders: --train-folder DIR --val-folder DIR')
    knn = Config(folder_knn_section(knn.to_dict() if hasattr(knn, 'to_dict') else knn,
                                    train_folder, val_folder, where=f'{config_path} knn_eval'))
    for key in ('train_dataloader', 'val_dataloader'):
        if key not in knn:
            raise KeyError(f'{config_path}: knn_eval lacks {key!r}')
    return knn


def holdout_split(knn: Config, num_holdout: int, where: str = 'knn_eval') -> Config:
    """``knn`` with its training set split in two: the memory keeps all but the last
    ``num_holdout`` images, which become the queries (a validation set from training labels)."""
    from mmpretrain.registry import DATASETS
    train_ds = copy.deepcopy(knn.train_dataloader.dataset)
    indices = train_ds.get('indices', None)
    if isinstance(indices, int) or indices is None:
        total = len(DATASETS.build(train_ds)) if indices is None else indices
        indices = list(range(total))
    indices = list(indices)
    if not 0 < num_holdout < len(indices):
        raise ValueError(f'--holdout {num_holdout}: {where} has {len(indices)} training images; '
                         f'hold out between 1 and {len(indices) - 1} of them')
    knn = copy.deepcopy(knn)
    knn.train_dataloader.dataset.indices = indices[:-num_holdout]
    val_ds = copy.deepcopy(train_ds)
    val_ds.indices = indices[-num_holdout:]
    knn.val_dataloader.dataset = val_ds
    return knn


class RawPixels(torch.nn.Module):
    """A 'backbone' whose feature is the input itself, flattened: the raw-pixel baseline."""

    def forward(self, x: torch.Tensor):
        return (x.flatten(1), )


def evaluate_model(model, knn: Config, ks, temperature, seed: int = 0,
                   progress: bool = True, backbone=None) -> Dict[str, float]:
    train_loader = build_dataloader(knn.train_dataloader, seed=seed)
    val_loader = build_dataloader(knn.val_dataloader, seed=seed)
    stage = knn.get('stage', -1)
    if progress:
        print(f'extracting {len(train_loader.dataset)} train features')
    stage = -1 if backbone is not None else stage
    train_f, train_y = extract_features(model, train_loader, stage=stage, progress=progress,
                                        backbone=backbone)
    if progress:
        print(f'extracting {len(val_loader.dataset)} test features')
    val_f, val_y = extract_features(model, val_loader, stage=stage, progress=progress,
                                    backbone=backbone)
    return knn_evaluate(train_f, train_y, val_f, val_y, ks=ks, temperature=temperature)


def representation_backbone(model, representation: str, checkpoint: Optional[str] = None):
    """The module that gives ``representation`` of a model with several (its
    ``representation_encoder``, e.g. LooC's), with the model's whole state (heads included)
    loaded from the training ``checkpoint`` when one is given."""
    if not hasattr(model, 'representation_encoder'):
        raise ValueError(f'--representation {representation}: {type(model).__name__} has one '
                         f'representation, its backbone; the option is for models with a '
                         f'representation_encoder (LooC)')
    encoder = model.representation_encoder(representation)
    if checkpoint is not None:
        state = state_dict_of(load_checkpoint_safe(checkpoint), source=checkpoint)
        missing = model.load_state_dict(state, strict=False).missing_keys
        if missing:
            raise ValueError(f'{checkpoint}: --representation {representation} needs the full '
                             f'training checkpoint of the model (heads included); '
                             f'{len(missing)} weights missing, e.g. {missing[:3]}')
    return encoder


def run(config: str, checkpoint: str, baseline: bool = False, seed: int = 0,
        cfg_options: Optional[dict] = None, ks=None, temperature=None,
        progress: bool = True, pixels: bool = False, weights: str = 'default',
        train_folder: Optional[str] = None,
        val_folder: Optional[str] = None,
        representation: Optional[str] = None,
        holdout: Optional[int] = None) -> Dict[str, Dict[str, float]]:
    """kNN results per backbone: ``checkpoint`` (its ``weights``, see
    :func:`~mmssl_ext.utils.checkpoint.select_backbone`), ``random_init``, ``raw_pixels``;
    ``train_folder`` / ``val_folder``: labelled folders instead of the config's data;
    ``representation``: see :func:`representation_backbone`; ``holdout``: see
    :func:`holdout_split`."""
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    knn = _knn_cfg(cfg, config, train_folder, val_folder)
    if holdout:
        knn = holdout_split(knn, holdout, where=f'{config} knn_eval')
    ks = tuple(ks or knn.get('ks', (20, 200)))
    temperature = temperature or knn.get('temperature', 0.07)
    results = {}
    if checkpoint != 'random':
        model = build_model(cfg, seed)
        if representation:
            encoder = representation_backbone(model, representation, checkpoint)
            results['checkpoint'] = evaluate_model(model, knn, ks, temperature, seed, progress,
                                                   backbone=encoder)
        else:
            loaded = load_backbone_weights(model, checkpoint, weights=weights)
            if progress:
                print(f'checkpoint weights: {loaded["choice"].description}')
            results['checkpoint'] = evaluate_model(model, knn, ks, temperature, seed, progress)
    if baseline or checkpoint == 'random':
        model = build_model(cfg, seed)
        encoder = representation_backbone(model, representation) if representation else None
        results['random_init'] = evaluate_model(model, knn, ks, temperature, seed, progress,
                                                backbone=encoder)
    if pixels:
        # the same images the backbones see (same pipeline and data preprocessor), flattened
        model = build_model(cfg, seed)
        results['raw_pixels'] = evaluate_model(model, knn, ks, temperature, seed, progress,
                                               backbone=RawPixels())
    return results


def format_results(results: Dict[str, Dict[str, float]]) -> str:
    keys = sorted({k for r in results.values() for k in r},
                  key=lambda k: (int(k.split('_')[0][1:]), k))
    lines = [f'{"backbone":<14}' + ''.join(f'{k:>12}' for k in keys)]
    for name, res in results.items():
        lines.append(f'{name:<14}' + ''.join(f'{res[k]:>12.2f}' for k in keys))
    return '\n'.join(lines)


def add_folder_args(p: argparse.ArgumentParser) -> None:
    """``--train-folder`` / ``--val-folder``: labelled folders instead of the config's data."""
    g = p.add_argument_group('labelled folders (instead of the config\'s knn_eval data)')
    g.add_argument('--train-folder', metavar='DIR',
                   help='the kNN memory / probe-train set: one sub-folder of images per class')
    g.add_argument('--val-folder', metavar='DIR',
                   help='the test set, same layout and class names as --train-folder')


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    p = argparse.ArgumentParser(description='weighted kNN evaluation of a backbone')
    p.add_argument('config', help='config with a knn_eval section')
    p.add_argument('checkpoint', help="checkpoint (full or backbone-only), or 'random'")
    p.add_argument('--baseline', action='store_true',
                   help='also evaluate a randomly initialised model, same protocol')
    p.add_argument('--pixels', action='store_true',
                   help='also evaluate raw pixels (the preprocessed input, flattened), same '
                        'protocol')
    p.add_argument('--ks', type=int, nargs='+', help='k values (default: config or 20 200)')
    p.add_argument('--temperature', type=float, help='voting temperature (default 0.07)')
    p.add_argument('--seed', type=int, default=0, help='seed of the random initialisation')
    p.add_argument('--weights', choices=WEIGHTS_CHOICES, default='default',
                   help="teacher-student checkpoints: 'default' evaluates the backbone the "
                        "method's authors evaluate (DINO: teacher; MoCo, BYOL: student), "
                        "'teacher' / 'student' the one named")
    p.add_argument('--representation',
                   help="another representation of a model that has several, from its full "
                        "checkpoint (LooC: 'embeddings', 'backbone+embeddings'; default: the "
                        'backbone)')
    add_folder_args(p)
    p.add_argument('--holdout', type=int, metavar='N',
                   help='validate without test labels: the last N training images are the '
                        'queries, the rest the memory; the test set is not read')
    p.add_argument('--out', help='write the results as JSON to this file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, xxx=yyy')
    args = p.parse_args(argv)
    # the CLI prints its own progress and table; keep mmengine's per-parameter init_weights
    # report (INFO) of every model it builds out of the output
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmssl_knn_eval_cli', log_level='WARNING')
    results = run(args.config, args.checkpoint, args.baseline, args.seed, args.cfg_options,
                  args.ks, args.temperature, pixels=args.pixels, weights=args.weights,
                  train_folder=args.train_folder, val_folder=args.val_folder,
                  representation=args.representation, holdout=args.holdout)
    print(format_results(results))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    return results
