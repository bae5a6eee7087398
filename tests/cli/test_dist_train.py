"""tools/dist_train.sh (torchrun) with 2 CPU processes on gloo."""
import os
import os.path as osp
import re
import subprocess
import sys

import torch

import mmssl_ext  # noqa: F401  (safe-load allow-list for the checkpoints read below)

from tests.helpers import MOCO_FMNIST_CFG, REPO, free_port, tiny_moco_options


def test_dist_train_two_cpu_processes(tiny_tree, tmp_path):
    work = str(tmp_path / 'dist')
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1',
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


def test_dist_train_pirl_banks_identical(tiny_tree, tmp_path):
    """PIRL under torchrun with 2 gloo processes: after 3 steps, with different samples on each
    rank, both ranks hold the same memory bank (updates are all-gathered), the one saved."""
    work = str(tmp_path / 'dist_pirl')
    cfg = tmp_path / 'pirl_ddp.py'
    cfg.write_text(
        f"_base_ = ['{REPO}/configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py']\n"
        "custom_imports = dict(imports=['mmssl_ext', 'tests.ddp_probe'],\n"
        "                      allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='DumpMemoryBankHook')]\n")
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1',
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    cmd = ['bash', osp.join(REPO, 'tools/dist_train.sh'), str(cfg), '2', '--work-dir', work,
           '--cfg-options', f'train_dataloader.dataset.data_root={tiny_tree}',
           'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False', 'model.memory_bank.length=24',
           'model.memory_bank.num_negatives=16', 'train_cfg.max_iters=3',
           'default_hooks.checkpoint.interval=3']
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    bank0 = torch.load(osp.join(work, 'bank_rank0.pth'))
    bank1 = torch.load(osp.join(work, 'bank_rank1.pth'))
    assert torch.equal(bank0, bank1), 'the memory banks diverged across ranks'
    saved = torch.load(osp.join(work, 'iter_3.pth'), map_location='cpu')['state_dict']
    torch.testing.assert_close(saved['memory_bank.feats'], bank0)
