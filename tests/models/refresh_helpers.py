"""What the tests of LA, PCL and SeLa share: tiny tools/train.py runs of their Fashion-MNIST
configs in one process and on 2 gloo processes (``--launcher pytorch`` on the CPU), recording
the model's state before every iteration."""
import os
import os.path as osp

import torch
import torch.multiprocessing as mp
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.registry import HOOKS
from mmssl_ext.utils.config import load_config
from tests.helpers import free_port


def model_of(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module(force=True)
class _RecordStateHook(Hook):
    """Before every iteration (before the refresh hooks: HIGH < NORMAL) the buffers ``keys``;
    after training the final state dict and the refresh hook's iterations, saved per rank."""
    priority = 'HIGH'

    def __init__(self, out_dir: str, keys):
        self.out_dir, self.keys, self.before = out_dir, list(keys), {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        state = model_of(runner).state_dict()
        self.before[runner.iter] = {k: state[k].detach().clone() for k in self.keys}

    def after_train(self, runner):
        refresh = [h for h in runner.hooks if hasattr(h, 'refreshed')]
        torch.save(dict(before=self.before, world_size=get_world_size(),
                        refreshed=list(refresh[0].refreshed) if refresh else None,
                        state={k: v.detach().clone()
                               for k, v in model_of(runner).state_dict().items()}),
                   osp.join(self.out_dir, f'rank{get_rank()}.pth'))


def run(config, opts, work, out_dir, keys, launcher='none'):
    """tools/train.py's path with the recording hook; returns the runner."""
    args = train_api.parse_args([config, '--work-dir', work, '--launcher', launcher,
                                 '--cfg-options', *opts])
    cfg = train_api.merge_args(load_config(args.config), args)
    cfg.custom_hooks = list(cfg.custom_hooks) + [
        dict(type='_RecordStateHook', out_dir=out_dir, keys=list(keys))]
    cfg.experiment_name = f'{osp.basename(work)}_{launcher}_{os.getpid()}'
    runner = train_api.build_runner(cfg)
    runner.train()
    return runner


def _ddp_worker(rank, port, config, opts, work, out_dir, keys):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE='2')
    torch.set_num_threads(1)
    import mmengine.runner.loops as loops
    from tests.conftest import _NoSleepTime
    loops.time = _NoSleepTime()  # no 2 s pause at every epoch restart
    run(config, opts, work, out_dir, keys, launcher='pytorch')


def run_two_ranks(config, opts, tmp_path, keys):
    """The run on 2 gloo ranks; the records of rank 0 and rank 1."""
    out = tmp_path / 'records'
    out.mkdir()
    mp.spawn(_ddp_worker, args=(free_port(), config, opts, str(tmp_path / 'work'), str(out),
                                list(keys)), nprocs=2, join=True)
    return [torch.load(out / f'rank{r}.pth', weights_only=False) for r in range(2)]


def tiny_opts(tree, n_img, batch_size, max_iters):
    return [f'train_dataloader.dataset.data_root={tree}',
            f'train_dataloader.batch_size={batch_size}', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            f'train_dataloader.dataset.indices={n_img}',
            f'train_cfg.max_iters={max_iters}', f'default_hooks.checkpoint.interval={max_iters}',
            'default_hooks.logger.interval=1']


#: a ResNet-18 at width 8 (64-d pooled features) instead of the configs' width 32
TINY_NET = ['model.backbone.stem_channels=8', 'model.backbone.base_channels=8',
            'model.neck.in_channels=64']
