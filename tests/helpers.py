"""Helpers shared by the tests (importable as ``tests.helpers``)."""
import contextlib
import os
import os.path as osp
import socket

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MOCO_FMNIST_CFG = osp.join(REPO, 'configs/mocov2/mocov2_r18_1xb64-1300it_fmnist.py')
NUM_TINY_CLASSES = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (``MASTER_PORT``, ``tools/dist_train.sh``'s
    ``PORT``)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gloo_group(rank: int, port: int, world_size: int):
    """Join a gloo process group on ``127.0.0.1:port`` as ``rank`` of ``world_size`` (one torch
    thread per process, as the CPU machine has two cores), and leave it on exit, error or not.

    For the target of ``torch.multiprocessing.spawn`` in the DDP tests."""
    import torch
    import torch.distributed as torch_dist
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    torch.set_num_threads(1)
    torch_dist.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


def write_tiny_imagenet_tree(root: str, n_train: int = 8, n_val: int = 4,
                             size: int = 28, seed: int = 0) -> str:
    """An ImageNet-style tree (train/, val/, meta/*.txt) of small grayscale PNGs, 3 classes.

    Each class has its own stripe orientation plus noise, so a feature extractor can tell them
    apart; laid out exactly like ``tools/prepare_data.py`` writes Fashion-MNIST.
    """
    from PIL import Image
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    patterns = [(np.sin(xx / 2.0) > 0), (np.sin(yy / 2.0) > 0), (np.sin((xx + yy) / 3.0) > 0)]
    for split, n in (('train', n_train), ('val', n_val)):
        lines = []
        idx = 0
        for c in range(NUM_TINY_CLASSES):
            os.makedirs(osp.join(root, split, f'class{c}'), exist_ok=True)
            for _ in range(n):
                img = patterns[c] * 180 + rng.randint(0, 60, size=(size, size))
                rel = f'class{c}/{idx:05d}.png'
                Image.fromarray(img.astype(np.uint8), mode='L').save(osp.join(root, split, rel))
                lines.append(f'{rel} {c}\n')
                idx += 1
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return root


def tiny_moco_options(tree: str, work_dir: str, max_iters: int = 4, ckpt_interval: int = 2,
                      batch_size: int = 4) -> list:
    """--cfg-options that shrink the real Fashion-MNIST MoCo v2 config to a seconds-long run."""
    return [
        f'train_dataloader.dataset.data_root={tree}',
        f'train_dataloader.batch_size={batch_size}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.queue_len=16',
        f'train_cfg.max_iters={max_iters}',
        f'default_hooks.checkpoint.interval={ckpt_interval}',
        'default_hooks.logger.interval=1',
        f'knn_eval.train_dataloader.dataset.data_root={tree}',
        f'knn_eval.val_dataloader.dataset.data_root={tree}',
        'knn_eval.train_dataloader.num_workers=0',
        'knn_eval.val_dataloader.num_workers=0',
        'knn_eval.train_dataloader.batch_size=8',
        'knn_eval.val_dataloader.batch_size=8',
    ]
