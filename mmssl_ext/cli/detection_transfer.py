"""``tools/detection_transfer.py``: train one mmdet detection config from several backbones with
the same budget and report bbox mAP (mmdet's CocoMetric) side by side.

    python tools/detection_transfer.py \\
        --backbone random \\
        --backbone pirl=work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth \\
        --backbone clusterfit=work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist/backbone.pth \\
        --iters 2000

Defaults to the CPU-sized Fashion-MNIST detection task
(``configs/transfer/mmdet/faster-rcnn_r18-w32_fpn_1xb8-1000it_fmnist-det.py``; its data come
from ``tools/prepare_detection_data.py``).  Every run uses the same config, seed, data order and
schedule; only the backbone's initialisation differs: ``random`` is mmdet's own initialisation
(no ``init_cfg``), ``NAME=PATH`` loads a training checkpoint of ours (``backbone.*`` keys) or a
backbone-only file, checked by ``PretrainedCheckHook`` (a checkpoint that does not fit is an error).
Each run trains in ``<work-dir>/<name>/`` and is then evaluated once on the val split; the table
and ``detection_transfer.json`` go to ``<work-dir>``.
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config, DictAction

import mmssl_ext  # noqa: F401  registers everything
from mmssl_ext.cli import train as train_api
from mmssl_ext.cli.analysis_common import RANDOM, parse_checkpoints
from mmssl_ext.engine.hooks.pretrained_check import load_state
from mmssl_ext.utils.config import load_config

DEFAULT_CONFIG = 'configs/transfer/mmdet/faster-rcnn_r18-w32_fpn_1xb8-1000it_fmnist-det.py'
METRIC_KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l')


def set_iterations(cfg: Config, iters: int) -> None:
    """Run an iteration-based config for ``iters`` iterations, step milestones scaled with it."""
    if cfg.train_cfg.get('type') != 'IterBasedTrainLoop':
        raise ValueError('--iters needs an IterBasedTrainLoop config, this one has '
                         f'train_cfg={dict(cfg.train_cfg)}')
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    scheds = cfg.param_scheduler if isinstance(cfg.param_scheduler, list) else \
        [cfg.param_scheduler]
    for s in scheds:
        if s.get('by_epoch', True):
            continue
        if 'milestones' in s:
            s.milestones = [max(1, int(round(m * iters / old))) for m in s.milestones]
        if s.get('end', None) == old:
            s.end = iters
        elif s.get('end', None) is not None and s.end > iters:  # warm-up longer than the run
            s.end = max(1, iters // 10)
    ckpt = cfg.default_hooks.get('checkpoint', None)
    if ckpt is not None:
        ckpt.interval = iters


def backbone_cfg(cfg: Config, checkpoint: Optional[str]) -> None:
    """Point the config's backbone at ``checkpoint`` (``None``: random init, no check hook)."""
    if checkpoint is None:
        cfg.model.backbone.init_cfg = None
        cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                            if h.get('type') != 'PretrainedCheckHook']
        return
    has_prefix = any(k.startswith('backbone.') for k in load_state(checkpoint))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint,
                                       prefix='backbone.' if has_prefix else None)


def train_one(config: str, name: str, checkpoint: Optional[str], work_dir: str,
              iters: Optional[int] = None, seed: int = 0,
              cfg_options: Optional[dict] = None) -> Dict[str, float]:
    """Train ``config`` from one backbone, evaluate on the val split, return the metrics."""
    args = train_api.parse_args([config, '--work-dir', osp.join(work_dir, name)])
    cfg = train_api.merge_args(load_config(config), args)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if iters:
        set_iterations(cfg, iters)
    # evaluated once, at the end of training (the loop validates after its last iteration)
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters
    cfg.randomness = dict(seed=seed)
    backbone_cfg(cfg, checkpoint)
    train_api.finalize_dataloader_cfgs(cfg)
    runner = train_api.build_runner(cfg)
    start = time.time()
    runner.train()
    train_s = time.time() - start
    # mmengine's RuntimeInfoHook files every validation metric under 'val/<name>'
    scalars = runner.message_hub.log_scalars
    out = {k.split('/')[-1]: float(v.current()) for k, v in scalars.items()
           if k.startswith('val/') and k.split('/')[-1] in METRIC_KEYS}
    if 'bbox_mAP' not in out:
        val_keys = sorted(k for k in scalars if k.startswith('val/'))
        raise RuntimeError(f'run {name!r} in {osp.join(work_dir, name)} produced no bbox mAP '
                           f'(validation metrics: {val_keys})')
    out['train_seconds'] = round(train_s, 1)
    return out


def format_table(results: Dict[str, Dict[str, float]]) -> str:
    cols = [k for k in METRIC_KEYS if any(k in r for r in results.values())]
    lines = ['| backbone | ' + ' | '.join(cols) + ' | train s |',
             '|---|' + '---|' * (len(cols) + 1)]
    for name, r in results.items():
        # COCO reports -1 for an area range without ground truth
        vals = [f'{100 * r[k]:.1f}' if r.get(k, -1) >= 0 else '-' for k in cols]
        lines.append(f'| {name} | ' + ' | '.join(vals) + f' | {r.get("train_seconds", 0):.0f} |')
    return '\n'.join(lines)


def run(backbones: Sequence[str], config: str = DEFAULT_CONFIG,
        work_dir: str = 'work_dirs/detection_transfer', iters: Optional[int] = None,
        seed: int = 0, cfg_options: Optional[dict] = None) -> Dict[str, Dict[str, float]]:
    # 'random', NAME=PATH or PATH, as the analysis tools take them; all errors before any run
    specs = parse_checkpoints(backbones)
    os.makedirs(work_dir, exist_ok=True)
    results = {}
    for name, ckpt in specs:
        results[name] = train_one(config, name, None if ckpt == RANDOM else ckpt, work_dir,
                                  iters, seed, cfg_options)
        results[name]['checkpoint'] = ckpt
        with open(osp.join(work_dir, 'detection_transfer.json'), 'w') as f:
            json.dump(dict(config=config, iters=iters, seed=seed, results=results), f, indent=2)
    return results


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip('`'))
    p.add_argument('--config', default=DEFAULT_CONFIG, help='an mmdet config of ours')
    p.add_argument('--backbone', action='append', required=True,
                   help="'random', NAME=CHECKPOINT or CHECKPOINT; repeat for several")
    p.add_argument('--iters', type=int, default=None,
                   help='training iterations per backbone (default: the config\'s)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--work-dir', default='work_dirs/detection_transfer')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config for every run')
    args = p.parse_args(argv)
    results = run(args.backbone, args.config, args.work_dir, args.iters, args.seed,
                  args.cfg_options)
    print(f'\nbbox mAP on the val split ({args.config}):')
    print(format_table(results))
    print(f'wrote {osp.join(args.work_dir, "detection_transfer.json")}')
    return results
