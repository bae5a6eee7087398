"""Sizes that follow from the data (memory-bank lengths, DeepCluster's labels, NCE's |D|) are
taken from the training set when a config leaves them unset: under our tools/train.py, under
mmpretrain's (``RUNNERS.build``), under DDP; a resume on a changed folder is refused."""
import os
import os.path as osp
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS, DefaultScope

import mmssl_ext  # noqa: F401  (registers everything; safe-load allow-list)
from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.data_sizing import (DATASET_SIZE_KEYS, check_resume,
                                          size_from_training_set, unset_size_keys)
from mmssl_ext.engine.hooks import MemoryBankSizeCheckHook
from mmssl_ext.models.losses.nce import NCELoss
from mmssl_ext.models.memories import MemoryBank, ODCMemory
from mmssl_ext.registry import MODELS
from tests.helpers import REPO, free_port

PIRL_FMNIST_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')
TINY_BACKBONE = dict(type='ResNet', depth=18, base_channels=8, stem_channels=8,
                     norm_cfg=dict(type='BN'))


def _write_pngs(folder, names, seed=0):
    from PIL import Image
    rng = np.random.RandomState(seed)
    for name in names:
        path = osp.join(folder, name)
        os.makedirs(osp.dirname(path), exist_ok=True)
        Image.fromarray(rng.randint(0, 255, (28, 28), dtype=np.uint8), mode='L').save(path)


@pytest.fixture
def folder(tmp_path):
    """6 unlabeled PNGs in nested sub-folders, read by mmpretrain's CustomDataset."""
    root = str(tmp_path / 'images')
    _write_pngs(root, ['a/0.png', 'a/1.png', 'a/b/2.png', 'c/3.png', '4.png', 'c/d/e/5.png'])
    return root


def _folder_dataset(root):
    return dict(type='CustomDataset', data_root=root, with_label=False,
                pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])


def _pirl_model(length_cfg: dict, loss=dict(type='NCELoss', temperature=0.07)):
    return dict(type='PIRL', backbone=TINY_BACKBONE,
                neck=dict(type='LinearNeck', in_channels=64, out_channels=16, gap_dim=2),
                transform_neck=dict(type='JigsawProjectionNeck', in_channels=64, num_patches=9,
                                    patch_channels=8, out_channels=16),
                memory_bank=dict(type='MemoryBank', feat_dim=16, num_negatives=4,
                                 **length_cfg),
                loss=loss)


def _size(model, root):
    return size_from_training_set(model, dict(batch_size=2, dataset=_folder_dataset(root)),
                                  'mmpretrain')


def _build(model_cfg):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(model_cfg)


def test_unset_keys_are_found_and_set_from_the_folder(folder):
    assert DATASET_SIZE_KEYS == ('length', 'num_samples')
    # left out or None: both unset; an explicit value is kept
    for length_cfg in ({}, dict(length=None)):
        model, loader, n, keys = _size(_pirl_model(length_cfg), folder)
        assert (n, keys) == (6, ['model.memory_bank.length'])
        assert model['memory_bank']['length'] == 6
        assert not isinstance(loader['dataset'], dict) and len(loader['dataset']) == 6
        pirl = _build(model)
        assert pirl.memory_bank.length == 6 and tuple(pirl.memory_bank.feats.shape) == (6, 16)
        assert pirl.nce.num_data == 6  # NCE's |D| follows the bank
    explicit = _pirl_model(dict(length=5))
    assert _size(explicit, folder) == (explicit, dict(batch_size=2,
                                                      dataset=_folder_dataset(folder)), None, [])
    # ...and an explicit size that is too small still fails before the first iteration
    bank = _build(explicit).memory_bank
    runner = SimpleNamespace(model=SimpleNamespace(named_modules=lambda: [('memory_bank', bank)]),
                             train_dataloader=SimpleNamespace(dataset=list(range(6))))
    with pytest.raises(ValueError, match=r'has length 5 .* has 6 samples.*length=6'):
        MemoryBankSizeCheckHook().before_train(runner)

    head = dict(type='LinearClsHead', num_classes=2, in_channels=64,
                loss=dict(type='CrossEntropyLoss'))
    odc = dict(type='ODC', backbone=TINY_BACKBONE,
               neck=dict(type='ODCNeck', in_channels=64, hid_channels=16, out_channels=8),
               head=dict(head, in_channels=8),
               memory_bank=dict(type='ODCMemory', feat_dim=8, num_classes=2))
    dc = dict(type='DeepCluster', backbone=TINY_BACKBONE,
              neck=dict(type='GlobalAveragePooling'), head=head)
    for cfg, key in ((odc, 'model.memory_bank.length'), (dc, 'model.num_samples')):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            assert [p for p, _, _ in unset_size_keys(cfg)] == [key]
        model, _, n, keys = _size(cfg, folder)
        assert (n, keys) == (6, [key])
        built = _build(model)
        rows = built.memory_bank.labels if cfg is odc else built.pseudo_labels
        assert rows.shape == (6, ) and bool((rows == -1).all())
    # built unsized (a kNN tool reading the training config), DeepCluster adopts a checkpoint's N
    unsized = _build(dc)
    assert unsized.num_samples is None and not unsized.labels_initialized
    built.set_pseudo_labels([0, 1, 1, 0, 1, 0])
    unsized.load_state_dict(built.state_dict())
    assert unsized.num_samples == 6 and unsized.pseudo_labels.tolist() == [0, 1, 1, 0, 1, 0]


def test_sela_and_pcl_are_sized_from_the_folder_or_a_checkpoint(folder):
    """SeLa (labels heads x N: the size on dim 1) and PCL (one label row per prototype set)."""
    from mmpretrain.structures import DataSample
    sela = dict(type='SeLa', backbone=TINY_BACKBONE, neck=dict(type='GlobalAveragePooling'),
                head=dict(type='SeLaHead', in_channels=64, num_classes=3, num_heads=2))
    pcl = dict(type='PCL', backbone=TINY_BACKBONE,
               neck=dict(type='MoCoV2Neck', in_channels=64, hid_channels=16, out_channels=8),
               head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                         temperature=0.2),
               num_clusters=[2, 3], queue_len=8, feat_dim=8)
    for cfg, buffers, shape in ((sela, ['pseudo_labels'], (2, 6)),
                                (pcl, ['im2cluster_0', 'im2cluster_1'], (6, ))):
        model, _, n, keys = _size(cfg, folder)
        assert (n, keys) == (6, ['model.num_samples'])
        built = _build(model)
        assert built.num_samples == 6
        for name in buffers:
            assert getattr(built, name).shape == shape and bool((getattr(built, name) == -1).all())
        # built unsized (a tool reading the training config): no rows, refuses to train, adopts
        # a checkpoint's N
        unsized = _build(cfg)
        assert unsized.num_samples is None
        with pytest.raises(RuntimeError, match='num_samples .*is unset'):
            img = torch.zeros(2, 3, 16, 16)
            unsized.loss([img, img], [DataSample(metainfo=dict(sample_idx=i)) for i in (0, 1)])
        for name in buffers:
            getattr(built, name).copy_(torch.arange(6).remainder(2).expand(shape))
        unsized.load_state_dict(built.state_dict())
        assert unsized.num_samples == 6
        for name in buffers:
            assert torch.equal(getattr(unsized, name), getattr(built, name))
    assert _build(pcl).prototypes_ready is False  # an unsized PCL has no prototypes to use
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # K > N once N is known
        with pytest.raises(ValueError, match=r'K=3 classes .* > N=2'):
            MODELS.build(dict(sela, num_samples=2))
        with pytest.raises(ValueError, match=r'\[2, num_samples=2\]'):
            MODELS.build(dict(pcl, num_samples=2))


def test_unsized_modules_take_the_checkpoint_size_and_refuse_to_run_unsized():
    saved = MemoryBank(length=7, feat_dim=4, num_negatives=2)
    bank = MemoryBank(feat_dim=4, num_negatives=2)
    with pytest.raises(RuntimeError, match='length is unset'):
        bank.get(torch.tensor([0]))
    bank.load_state_dict(saved.state_dict())
    assert bank.length == 7 and torch.equal(bank.feats, saved.feats)
    src = ODCMemory(length=5, feat_dim=4, num_classes=2)
    src.labels.copy_(torch.tensor([0, 1, 0, 1, 1]))
    odc = ODCMemory(feat_dim=4, num_classes=2)
    assert not odc.initialized
    odc.load_state_dict(src.state_dict())
    assert odc.length == 5 and odc.initialized and torch.equal(odc.labels, src.labels)
    loss = NCELoss(num_data=None)
    with pytest.raises(RuntimeError, match='num_data .* is unset'):
        loss(torch.zeros(2), torch.zeros(2, 3))


def test_resume_check_names_both_sizes():
    model = torch.nn.Module()
    model.memory_bank = MemoryBank(length=6, feat_dim=4, num_negatives=2)
    ckpt = dict(state_dict={'memory_bank.feats': torch.zeros(6, 4)}, meta=dict(train_set_size=6))
    check_resume(model, ckpt, 6, 'x.pth')  # nothing changed
    with pytest.raises(ValueError, match=r'x\.pth was trained on 6 images .* now has 8'):
        check_resume(model, ckpt, 8, 'x.pth')
    model.memory_bank = MemoryBank(length=8, feat_dim=4, num_negatives=2)
    del ckpt['meta']  # an older checkpoint: its rows are the size it was trained on
    with pytest.raises(ValueError, match=r'trained on 6 images .* now has 8.*without --resume'):
        check_resume(model, ckpt, 8, 'x.pth')
    with pytest.raises(ValueError, match=r'config now sets model\.memory_bank\.length=8'):
        check_resume(model, ckpt, 6, 'x.pth')


def _write_config(tmp_path, folder, extra=''):
    path = tmp_path / 'pirl_folder.py'
    path.write_text(
        f"_base_ = ['{PIRL_FMNIST_CFG}']\n"
        "model = dict(memory_bank=dict(length=None, num_negatives=4))\n"
        "train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,\n"
        f"    dataset=dict(_delete_=True, type='CustomDataset', data_root='{folder}',\n"
        "                 with_label=False, pipeline={{_base_.train_pipeline}}))\n"
        "train_cfg = dict(max_iters=2)\n"
        "default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))\n" + extra)
    return str(path)


def test_train_sizes_the_bank_and_resume_refuses_a_changed_folder(folder, tmp_path, capsys):
    cfg_path = _write_config(tmp_path, folder)
    work = str(tmp_path / 'work')
    runner = train_api.main([cfg_path, '--work-dir', work])
    assert runner.iter == 2 and runner.model.memory_bank.length == 6
    assert 'memory bank length set from the training set: 6' in capsys.readouterr().out
    ckpt = torch.load(osp.join(work, 'iter_2.pth'), map_location='cpu')
    assert ckpt['state_dict']['memory_bank.feats'].shape[0] == 6
    assert ckpt['meta']['train_set_size'] == 6

    _write_pngs(folder, ['new/6.png', 'new/7.png'], seed=1)
    # resumed the way mmpretrain's tools/train.py builds the runner (RUNNERS, SSLRunner.from_cfg)
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict(dict(work_dir=work, resume=True, load_from=osp.join(work, 'iter_2.pth'),
                             train_cfg=dict(max_iters=3)))
    runner = RUNNERS.build(cfg)
    assert runner.model.memory_bank.length == 8  # sized from the grown folder...
    with pytest.raises(ValueError) as e:  # ...so the checkpoint's 6 rows do not fit it
        runner.train()
    msg = str(e.value)
    assert re.search(r'iter_2\.pth was trained on 6 images \(model\.memory_bank\.length = 6\); '
                     r'the training set .* now has 8', msg), msg
    assert 'ann_file' in msg and 'without --resume' in msg


def test_ddp_ranks_get_the_full_training_set_length(folder, tmp_path):
    """2 gloo processes: each rank's bank has one row per image of the whole folder (6), not of
    its shard (3), and the ranks hold the same bank."""
    cfg = _write_config(tmp_path, folder,
                        "custom_imports = dict(imports=['mmssl_ext', 'tests.ddp_probe'],\n"
                        "                      allow_failed_imports=False)\n"
                        "custom_hooks = [dict(type='DumpMemoryBankHook')]\n"
                        "train_cfg = dict(max_iters=1)\n")
    work = str(tmp_path / 'dist')
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1',
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    out = subprocess.run(['bash', osp.join(REPO, 'tools/dist_train.sh'), cfg, '2',
                          '--work-dir', work], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert 'memory bank length set from the training set: 6' in log, log[-2000:]
    bank0 = torch.load(osp.join(work, 'bank_rank0.pth'))
    bank1 = torch.load(osp.join(work, 'bank_rank1.pth'))
    assert bank0.shape == bank1.shape == (6, 128)
    assert torch.equal(bank0, bank1)
