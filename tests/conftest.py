import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.helpers import write_tiny_imagenet_tree  # noqa: E402


@pytest.fixture(scope='session')
def tiny_tree(tmp_path_factory):
    return write_tiny_imagenet_tree(str(tmp_path_factory.mktemp('tiny_tree')))


@pytest.fixture(scope='session')
def tiny_moco_ckpt(tiny_tree, tmp_path_factory):
    """A real checkpoint of the Fashion-MNIST MoCo v2 config, from a 2-iteration tools/train.py run
    on the tiny tree (full mmengine checkpoint: state_dict, optimizer, message_hub, meta)."""
    from tests.helpers import MOCO_FMNIST_CFG, tiny_moco_options
    from mmssl_ext.apis import train as train_api
    work = str(tmp_path_factory.mktemp('tiny_moco'))
    train_api.main([MOCO_FMNIST_CFG, '--work-dir', work, '--cfg-options',
                    *tiny_moco_options(tiny_tree, work, max_iters=2, ckpt_interval=2)])
    return osp.join(work, 'iter_2.pth')


class _NoSleepTime:
    """``time`` for mmengine's loops without the 2 s pause at every epoch boundary."""

    def __getattr__(self, name):
        import time
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds):
        return None


@pytest.fixture(autouse=True)
def _no_epoch_pause(monkeypatch):
    """mmengine's IterBasedTrainLoop sleeps 2 s whenever its dataloader restarts (a guard against
    worker deadlocks). The tiny test trees restart every few iterations and the tests use no
    workers, so the pause only costs time; it is removed for in-process runs."""
    import mmengine.runner.loops as loops
    monkeypatch.setattr(loops, 'time', _NoSleepTime())


@pytest.fixture(scope='session')
def tiny_pirl_ckpt(tiny_tree, tmp_path_factory):
    """A real checkpoint of the Fashion-MNIST PIRL config after 2 tools/train.py iterations on the
    tiny tree (memory bank sized to it)."""
    from tests.helpers import REPO
    from mmssl_ext.apis import train as train_api
    work = str(tmp_path_factory.mktemp('tiny_pirl'))
    train_api.main([
        f'{REPO}/configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py', '--work-dir', work,
        '--cfg-options', f'train_dataloader.dataset.data_root={tiny_tree}',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'model.memory_bank.length=24',
        'model.memory_bank.num_negatives=16', 'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2'])
    return osp.join(work, 'iter_2.pth')
