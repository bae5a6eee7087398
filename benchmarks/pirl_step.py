"""PIRL step cost, measured in one run against references on the same tensors.

1. PIRL train step (both branches, memory bank, InfoNCE/NCE, bank update, SGD step) vs the same
   backbone's plain forward/backward on the same image + patch tensors with a trivial loss and no
   PIRL machinery (target: overhead <= 15% on CPU).
2. PIRL images/s vs mmpretrain's MoCo v2 (same backbone, batch and resolution).
3. Memory-bank cost at ImageNet scale: 1.28M x 128 bank, 32000 shared negatives, batch 32.

    .venv/bin/python -m benchmarks.pirl_step [--batch 64 --width 32 --steps 5]
"""
import argparse
import copy
import os.path as osp

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from benchmarks.measure import time_per_call
from benchmarks.report import REPO
from mmssl_ext.models import MemoryBank
from mmssl_ext.registry import MODELS

PIRL_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')
MOCO_CFG = osp.join(REPO, 'configs/mocov2/mocov2_r18_1xb64-1300it_fmnist.py')


def build(cfg_path, width, overrides=None):
    cfg = Config.fromfile(cfg_path)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(stem_channels=width, base_channels=width)
    for k, v in (overrides or {}).items():
        model_cfg[k].update(v)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    return model


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.pirl_step',
                                description=__doc__.splitlines()[0])
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--width', type=int, default=32, help='ResNet-18 base/stem channels')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--bank-length', type=int, default=1281167)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    B, feat = a.batch, a.width * 8
    img = torch.randn(B, 3, 32, 32)
    patches = torch.randn(B, 9, 3, 16, 16)
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(B)]

    pirl = build(PIRL_CFG, a.width, dict(neck=dict(in_channels=feat),
                                         transform_neck=dict(in_channels=feat)))
    opt = torch.optim.SGD(pirl.parameters(), lr=0.01, momentum=0.9)

    def pirl_step():
        opt.zero_grad()
        pirl.loss([img, patches], samples)['loss'].backward()
        opt.step()

    def plain_step():  # same backbone, same tensors, same projections, trivial loss
        opt.zero_grad()
        f = pirl.neck(pirl.backbone(img))[0]
        g = pirl.transform_neck(pirl.backbone(patches.flatten(0, 1)))[0]
        (F.normalize(f, dim=1) * F.normalize(g, dim=1)).sum().backward()
        opt.step()

    t_plain = time_per_call(plain_step, a.steps)
    t_pirl = time_per_call(pirl_step, a.steps)

    moco = build(MOCO_CFG, a.width, dict(neck=dict(in_channels=feat, hid_channels=feat)))
    opt_m = torch.optim.SGD(moco.parameters(), lr=0.01, momentum=0.9)
    img2 = torch.randn(B, 3, 32, 32)

    def moco_step():
        opt_m.zero_grad()
        moco.loss([img, img2], samples)['loss'].backward()
        opt_m.step()

    t_moco = time_per_call(moco_step, a.steps)

    print(f'ResNet-18 width {a.width}, batch {B}, image 32 px + 9 patches of 16 px, '
          f'{torch.get_num_threads()} threads')
    print(f'plain fwd/bwd (same tensors): {t_plain * 1000:8.1f} ms/step')
    print(f'PIRL step                   : {t_pirl * 1000:8.1f} ms/step  overhead '
          f'{100 * (t_pirl / t_plain - 1):+.1f}% (target <= 15%)')
    print(f'PIRL images/s {B / t_pirl:7.1f} vs mmpretrain MoCo v2 {B / t_moco:7.1f} '
          f'(ratio PIRL/MoCo {t_moco / t_pirl:.2f})')

    # memory bank at ImageNet scale
    bank = MemoryBank(length=a.bank_length, feat_dim=128, num_negatives=32000)
    q = F.normalize(torch.randn(32, 128), dim=1)
    idx = torch.randint(0, a.bank_length, (32, ))

    def bank_step():
        negs = bank.sample_negatives(idx)
        (q @ negs.t()).sum()
        bank.get(idx)
        bank.update(idx, q)

    t_bank = time_per_call(bank_step, 20)
    bank_mb = bank.feats.numel() * 4 / 2**20
    print(f'memory bank {a.bank_length} x 128: {bank_mb:.0f} MiB resident; per step at batch 32 '
          f'with 32000 negatives: {t_bank * 1000:.1f} ms (negatives gathered: '
          f'{32000 * 128 * 4 / 2**20:.1f} MiB), i.e. {100 * t_bank / t_pirl:.1f}% of the PIRL '
          f'step above')


if __name__ == '__main__':
    main()
