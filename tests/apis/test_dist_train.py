"""tools/dist_train.sh (torchrun) with 2 CPU processes on gloo."""
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import torch

from tests.helpers import MOCO_FMNIST_CFG, REPO, tiny_moco_options


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_cpu_processes(tiny_tree, tmp_path):
    work = str(tmp_path / 'dist')
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    # batch 2 per process, 2 processes: global batch 4; queue 16 divisible by it
    cmd = ['bash', osp.join(REPO, 'tools/dist_train.sh'), MOCO_FMNIST_CFG, '2',
           '--work-dir', work, '--cfg-options',
           *tiny_moco_options(tiny_tree, work, max_iters=2, ckpt_interval=2, batch_size=2)]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert re.search(r'Distributed training: True', log), log[-2000:]
    assert 'GPU number: 2' in log, log[-2000:]  # mmengine's name for the world size
    ckpt = torch.load(osp.join(work, 'iter_2.pth'), map_location='cpu')
    assert ckpt['meta']['iter'] == 2
    # MoCo enqueued the all-gathered keys of both ranks: 2 iterations x 4 keys
    assert int(ckpt['state_dict']['queue_ptr']) == 8
