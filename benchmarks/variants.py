"""Ours with one part swapped for the peer's, to find where a gap to lightly comes from
(``results/README.md`` section 2).  Same harness as ``benchmarks.quality`` (budget, schedule,
evaluation, the CPU preset's data); each variant changes one thing in our config:

* ``bilinear``: the views' ``RandomResizedCrop`` resizes bilinear (lightly's BYOL views) instead
  of the config's interpolation;
* ``last-bias``: a bias in the last layer of the projector and the predictor (lightly's
  ``BYOLProjectionHead`` / ``BYOLPredictionHead``);
* ``lightly-lars``: lightly's ``LARS`` class as the optimizer, with the config's lr, momentum,
  weight decay (lightly applies the lr after the momentum buffer, mmpretrain before);
* ``lightly-views``: the method's lightly view transform, built as ``benchmarks.peers`` builds it
  (torchvision on PIL), replaces our ``MultiView`` pipeline step; lightly normalises nothing,
  our data preprocessor normalises as always;
* ``lightly-loop``: the other way round, only our *model* is kept: the config's model (as the
  Runner builds it: mmpretrain's algorithm, neck, head, EMA target, loss) trains in
  ``benchmarks.peers``' plain loop, with everything else of the lightly run: its views, data
  loader, optimizer (lightly's ``LARS`` / torch ``SGD``, lightly's weight-decay groups),
  ``CosineWarmupScheduler``.  Against the lightly row this isolates the model code; against
  ours, the loop and data.  It combines with the changes to the model (``last-bias``,
  ``head-per-size``) only;
* ``head-per-size`` (DINO): ``model.head_per_crop_size=True``, the student's head runs once per
  crop size, as lightly's DINO benchmark calls it (``head(backbone(global crops))``, then the
  local crops), instead of once on the features of all crops (the official ``MultiCropWrapper``,
  our default): with a BatchNorm head (our Fashion-MNIST config) the global and the local crops
  get batch statistics of their own.

    .venv/bin/python -m benchmarks.variants --method byol --variant lightly-views --budget 200000

Writes ``results/variants_<method>-with-<variants>_<device>-<budget>_seed<N>.json`` / ``.md``
(``--tag`` names them instead).  Needs ``lightly`` for the ``lightly-*`` variants
(``benchmarks/requirements.txt``).
"""
import argparse
import os
import os.path as osp
import types
from typing import List, Optional

import numpy as np
import torch

from benchmarks import quality
from benchmarks import report as rep
from benchmarks.report import REPO

VARIANTS = ('bilinear', 'last-bias', 'lightly-lars', 'lightly-views', 'lightly-loop',
            'head-per-size')
# changes to the model; the other variants change what lightly's loop replaces
LOOP_COMBINES = {'last-bias', 'head-per-size'}


def _multiview(cfg):
    pipe = cfg.train_dataloader.dataset.pipeline
    steps = [i for i, t in enumerate(pipe) if t['type'] == 'MultiView']
    if len(steps) != 1:
        raise ValueError(f'{cfg.filename}: expected one MultiView step in the training pipeline, '
                         f"got {[t['type'] for t in pipe]}")
    return pipe, steps[0]


def _lightly_peer(variant: str, method: str):
    """``peers.PEERS[method]``, or an error that names the variant and the methods it has."""
    from benchmarks import peers
    if method not in peers.PEERS:
        raise ValueError(f'{variant}: no lightly peer for {method!r}; '
                         f'one of {sorted(peers.PEERS)}')
    return peers.PEERS[method]


def _lightly_views_transform(method: str, cfg):
    """The registered transform that makes the views with lightly's transform for ``method``."""
    from mmcv.transforms import BaseTransform
    from mmpretrain.registry import TRANSFORMS
    from PIL import Image
    # un-normalised: our data preprocessor normalises
    built = _lightly_peer('lightly-views', method).transform(
        types.SimpleNamespace(cfg=cfg, notes=[], normalize_views=False))
    views = built[0] if isinstance(built, tuple) else built

    @TRANSFORMS.register_module(name='LightlyViews', force=True)
    class LightlyViews(BaseTransform):
        """``results['img']`` (BGR, as ``LoadImageFromFile`` reads it) -> the list of lightly's
        views, 0-255 float, BGR, H x W x C (what ``PackInputs`` and our preprocessor take)."""

        def transform(self, results):
            pil = Image.fromarray(np.ascontiguousarray(results['img'][..., ::-1]))
            results['img'] = [
                np.ascontiguousarray((v * 255.0).permute(1, 2, 0).numpy()[..., ::-1])
                for v in views(pil)]
            return results

    return views


def ours_in_lightly_loop(method: str):
    """The ``peers.Peer`` class that trains our model for ``method`` in lightly's loop."""
    from benchmarks import peers
    from mmengine.logging import MessageHub
    from mmengine.registry import DefaultScope
    from mmssl_ext.registry import MODELS
    lightly_peer = _lightly_peer('lightly-loop', method)

    class OursInLightlyLoop(peers.Peer):
        name = method
        implementation = 'ours (model) in the lightly loop'
        transform = lightly_peer.transform  # lightly's views, as the lightly row makes them

        def __init__(self, cfg):
            torch.nn.Module.__init__(self)
            self.cfg = cfg
            with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmpretrain')), \
                    peers.quiet_mmengine():
                self.model = MODELS.build(cfg.model)
                self.model.init_weights()
            self.backbone = peers.PooledBackbone(self.model.backbone)  # what is evaluated
            self.notes = [f'model: {cfg.model.type} built from the config (its own forward, '
                          'loss and target update), in lightly\'s loop with lightly\'s views; '
                          "lightly's views are normalised by the transform, so the model's "
                          'data preprocessor is not called']
            self.hparams = dict(model=cfg.model.type)
            self.diagnostics = {}
            self.clip_norm = None

        def trained_modules(self):
            # the EMA / momentum copies are not trained (mmpretrain keeps them out of the
            # optimizer by requires_grad=False): the optimizer sees what the Runner's would
            return [m for n, m in self.model.named_children()
                    if n != 'data_preprocessor' and any(p.requires_grad for p in m.parameters())]

        def loss(self, views, it, iters):
            from mmpretrain.structures import DataSample
            # what the Runner's RuntimeInfoHook records (mmpretrain's CosineEMA reads it)
            MessageHub.get_current_instance().update_info('max_iters', iters)
            samples = [DataSample() for _ in range(views[0].shape[0])]
            loss, _ = self.model.parse_losses(self.model.loss(views, samples))
            return loss

    return OursInLightlyLoop


def run_in_lightly_loop(method: str, cfg, args, preset: dict) -> dict:
    """Train our model for ``method`` (``cfg``, changed by the other variants) in
    ``benchmarks.peers``' lightly loop, and evaluate it as every row is evaluated."""
    from benchmarks import peers
    peer_args = argparse.Namespace(seed=args.seed, dry_run=False, no_check_budget=True,
                                   skip_eval=False, work_dir=osp.join(args.work_dir, args.tag))
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return peers.run_lightly(method, peer_args, preset, device,
                             peer_cls=ours_in_lightly_loop(method), cfg=cfg)


def apply_variant(cfg, method: str, variant: str) -> str:
    """Change ``cfg`` in place; returns what was changed, for the report."""
    if variant == 'bilinear':
        pipe, i = _multiview(cfg)
        n = 0
        for view in pipe[i]['transforms']:
            for t in view:
                if t['type'] == 'RandomResizedCrop':
                    t['interpolation'] = 'bilinear'
                    n += 1
        if not n:
            raise ValueError(f'{cfg.filename}: bilinear: no RandomResizedCrop in the views')
        return f'{n} RandomResizedCrop -> bilinear'
    if variant == 'last-bias':
        heads = [('model.neck', cfg.model.neck)]
        if 'predictor' in cfg.model.get('head', {}):
            heads.append(('model.head.predictor', cfg.model.head.predictor))
        for name, node in heads:
            if node.get('type') != 'NonLinearNeck':
                raise ValueError(f'{cfg.filename}: last-bias: {name} is {node.get("type")}, '
                                 'not a NonLinearNeck')
            node['with_last_bias'] = True
        return ', '.join(f'{n}.with_last_bias=True' for n, _ in heads)
    if variant == 'lightly-lars':
        from lightly.utils.lars import LARS
        from mmengine.registry import OPTIMIZERS
        OPTIMIZERS.register_module(name='LightlyLARS', module=LARS, force=True)
        opt = cfg.optim_wrapper.optimizer
        if opt.type != 'LARS':
            raise ValueError(f'{cfg.filename}: lightly-lars: the optimizer is {opt.type}, not LARS')
        cfg.optim_wrapper.optimizer = dict(type='LightlyLARS', lr=opt.lr,
                                           momentum=opt.get('momentum', 0.9),
                                           weight_decay=opt.get('weight_decay', 0.0))
        return 'optimizer LARS (mmpretrain) -> lightly.utils.lars.LARS'
    if variant == 'lightly-views':
        views = _lightly_views_transform(method, cfg)
        pipe, i = _multiview(cfg)
        pipe[i] = dict(type='LightlyViews')
        return f'MultiView -> {type(views).__name__} (lightly)'
    if variant == 'head-per-size':
        if cfg.model.get('type') != 'MMSSLDINO':
            raise ValueError(f'{cfg.filename}: head-per-size: model.type is '
                             f"{cfg.model.get('type')}, not MMSSLDINO")
        cfg.model.head_per_crop_size = True
        return "model.head_per_crop_size=True: the head runs once per crop size (lightly's)"
    if variant == 'lightly-loop':
        ours_in_lightly_loop(method)  # an unknown method fails here, before any training
        return ("our model in benchmarks.peers' lightly loop (lightly's views, loader, "
                'optimizer, scheduler)')
    raise ValueError(f'unknown variant {variant!r}; one of {VARIANTS}')


def result_name(args: argparse.Namespace, device: str) -> str:
    """``<method>-with-<variants>_<device>-<budget>_seed<N>``: what the results file of ``args``
    (:func:`parse_args`) run on ``device`` holds."""
    return rep.result_name(f"{args.method}-with-{'+'.join(args.variant)}",
                           'gpu' if device == 'cuda' else device, rep.count(args.budget),
                           seed=args.seed)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m benchmarks.variants',
                                description=__doc__.splitlines()[0])
    p.add_argument('--method', required=True, choices=sorted(quality.METHODS))
    p.add_argument('--variant', nargs='+', required=True, choices=VARIANTS,
                   help='one or more, applied together')
    p.add_argument('--budget', type=int, default=50000)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--work-dir', default='work_dirs/benchmarks/variants')
    p.add_argument('--out', default=rep.RESULTS)
    p.add_argument('--tag', help='results file name: variants_<tag>.json (default: '
                   '<method>-with-<variants>_<device>-<budget>_seed<seed>)')
    args = p.parse_args(argv)
    if {'bilinear', 'lightly-views'} <= set(args.variant):
        p.error('--variant bilinear and lightly-views both replace how the views are made: '
                'give one of them')
    not_with_loop = set(args.variant) - LOOP_COMBINES - {'lightly-loop'}
    if 'lightly-loop' in args.variant and not_with_loop:
        p.error(f'--variant lightly-loop combines with {sorted(LOOP_COMBINES)} only, not '
                f'{sorted(not_with_loop)}')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    preset = dict(quality.PRESETS['cpu'], budget=args.budget)
    torch.set_num_threads(preset['threads'])
    import mmssl_ext  # noqa: F401
    from mmssl_ext.utils.config import load_config
    if 'lightly-loop' in args.variant:
        from benchmarks import peers
        cfg = peers.method_cfg(args.method, preset)  # the config the lightly row is built from
    else:
        cfg = load_config(osp.join(REPO, quality.METHODS[args.method]))
    changes = [apply_variant(cfg, args.method, v) for v in args.variant]
    args.tag = args.tag or result_name(args, 'cuda' if torch.cuda.is_available() else 'cpu')
    tag = args.tag
    os.makedirs(args.work_dir, exist_ok=True)
    if 'lightly-loop' in args.variant:
        row = run_in_lightly_loop(args.method, cfg, args, preset)
    else:
        work = osp.join(args.work_dir, tag)
        dumped = osp.join(args.work_dir, f'{tag}.py')
        cfg.dump(dumped)
        run_args = argparse.Namespace(dry_run=False, only_random=False, seed=args.seed,
                                      batch_size=None, work_dir=work)
        row = quality.run_method(args.method, dumped, run_args, preset)
    row.update(config=quality.METHODS[args.method], variants=args.variant, changes=changes)
    report = rep.new_report('benchmarks.variants', argv, budget=args.budget,
                            machine=rep.machine(preset['threads']), rows={args.method: row})
    md = '\n'.join([f'## Ours with parts swapped for the peer\'s ({report["date"]})', ''] +
                   rep.provenance(report) + [
        '| method | variant | changes | kNN k=20 | kNN k=200 | linear | iterations x batch | '
        'seed |', '|---|---|---|---:|---:|---:|---|---:|',
        f"| {args.method} | {'+'.join(args.variant)} | {'; '.join(changes)} | "
        f"{row.get('k20_top1')} | {row.get('k200_top1')} | {row.get('linear_top1')} | "
        f"{row['iterations']} x {row['batch_size']} | {args.seed} |", ''])
    rep.write(report, md, 'variants', tag, args.out)
    print(md)
    return report


if __name__ == '__main__':
    main()
