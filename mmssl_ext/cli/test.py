"""``tools/test.py``: the same flags and behaviour as mmpretrain's ``tools/test.py``."""
import argparse
import os
import os.path as osp
from copy import deepcopy
from typing import List, Optional

import mmengine
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.evaluator import DumpResults

import mmssl_ext  # noqa: F401  registers everything
from mmssl_ext.cli.train import _default_dataloader_cfg, loader_defaults
from mmssl_ext.engine.runner import build_runner, finalize_dataloader_cfgs
from mmssl_ext.utils.config import load_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model (mmssl_ext)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for the evaluation metrics file')
    parser.add_argument('--out', help='the file to output results to')
    parser.add_argument('--out-item', choices=['metrics', 'pred'],
                        help='write metrics or predictions (default) to --out')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, xxx=yyy; lists as key="[a,b]" or key=a,b')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision test')
    parser.add_argument('--show-dir', help='directory to save visualisations to')
    parser.add_argument('--show', action='store_true', help='display results in a window')
    parser.add_argument('--interval', type=int, default=1,
                        help='visualise every N samples')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='display time of every window (s)')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='disable pin_memory in the dataloaders')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (tta_model / tta_pipeline, or flip)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is None and args.out_item is not None:
        parser.error('--out-item needs --out to name the output file')
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg.fp16 = True
    if args.show or args.show_dir is not None:
        if 'visualization' not in cfg.default_hooks:
            raise KeyError('--show/--show-dir need default_hooks.visualization='
                           'dict(type="VisualizationHook") in the config')
        vis = cfg.default_hooks.visualization
        vis.enable = True
        vis.show = args.show
        vis.wait_time = args.wait_time
        vis.out_dir = args.show_dir
        vis.interval = args.interval
    if args.tta:
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
        if 'tta_pipeline' not in cfg:
            test_pipeline = cfg.test_dataloader.dataset.pipeline
            cfg.tta_pipeline = deepcopy(test_pipeline)
            cfg.tta_pipeline[-1] = dict(
                type='TestTimeAug',
                transforms=[[dict(type='RandomFlip', prob=1.),
                             dict(type='RandomFlip', prob=0.)],
                            [test_pipeline[-1]]])
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    _default_dataloader_cfg(cfg, 'test_dataloader', loader_defaults(cfg), args.no_pin_memory)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    finalize_dataloader_cfgs(cfg)
    return cfg


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config), args)
    runner = build_runner(cfg)
    if args.out and args.out_item in ('pred', None):
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    return metrics
