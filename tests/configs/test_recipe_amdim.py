"""AMDIM's ImageNet config pinned to the official code, Philip-Bachman/amdim-public:

* README.md, "Self-Supervised Training": ``python train.py --ndf 192 --n_rkhs 1536
  --batch_size 480 --tclip 20.0 --n_depth 8 --dataset IN128 --amp`` on 4 GPUs
  (``CUDA_VISIBLE_DEVICES=0,1,2,3``);
* train.py: ``--learning_rate`` default 0.0002;
* task_self_supervised.py: ``optim.Adam(..., betas=(0.8, 0.999), weight_decay=1e-5, eps=1e-8)``
  over every module, ``MultiStepLR(milestones=[30, 45], gamma=0.2)``, ``epochs = 50`` for
  ImageNet, stepped as ``scheduler_inf.step(epoch)`` after each epoch, and the warm-up
  ``lr_scale = min(1., (total_updates + 1) / 500.)`` for the first 500 updates;
* costs.py: ``lgt_reg = 5e-2 * (raw_scores**2.).mean()``, ``tanh_clip(raw_scores,
  clip_val=self.tclip)``;
* datasets.py ``TransformsImageNet128``: one ``RandomHorizontalFlip(p=0.5)`` before both views,
  then per view ``RandomResizedCrop(128, scale=(0.3, 1.0), ratio=(0.7, 1.4),
  interpolation=INTERP)`` (``INTERP = 3``, bicubic), ``RandomApply([ColorJitter(0.4, 0.4, 0.4,
  0.1)], p=0.8)``, ``RandomGrayscale(p=0.25)``, ImageNet mean / std.

``--ndf`` and ``--n_depth`` size AMDIM's own encoder, which a ResNet-50 replaces
(configs/amdim/README.md); ``--amp`` is ``tools/train.py --amp``.
"""
import bisect

import torch
from mmengine.registry import DefaultScope

from tests.configs import recipe

PATH = 'amdim/amdim_r50_4xb120-50e_in1k.py'


def test_objective_and_embedding():
    cfg = recipe.load(PATH)
    recipe.assert_values(cfg.model, dict(type='AMDIM', gather_negatives=True))
    recipe.assert_values(cfg.model.neck, dict(type='AMDIMEmbeddingNeck', out_channels=1536))
    recipe.assert_values(cfg.model.loss, dict(type='AMDIMNCELoss', tclip=20.0, score_reg=0.05))
    recipe.assert_values(cfg.model.backbone, dict(type='ResNet', depth=50, out_indices=[2, 3]))


def test_local_maps_at_128_and_224_px_and_a_training_step():
    """The 7x7 and 5x5 roles: ResNet-50 stage 3 and stage 4 (8 x 8 and 4 x 4 at the recipe's
    128 px; 14 x 14 and 7 x 7 at 224 px); the pipeline's two 128 px views train the model."""
    import numpy as np
    from mmengine.dataset import default_collate

    from mmssl_ext.registry import MODELS, TRANSFORMS
    cfg = recipe.load(PATH)
    model_cfg = recipe.plain(cfg.model)
    model_cfg['neck']['out_channels'] = 8  # the geometry is tested, not the embedding width
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg).eval()
    assert model.neck.in_channels == (1024, 2048, 2048)
    with torch.no_grad():
        for size, (h7, h5) in ((128, (8, 4)), (224, (14, 7))):
            r7, r5, r1 = model.embed(torch.zeros(1, 3, size, size))
            assert r7.shape == (1, 8, h7, h7) and r5.shape == (1, 8, h5, h5)
            assert r1.shape == (1, 8)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = [TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline[1:]]
    batch = []
    for seed in (0, 1):
        res = dict(img=np.random.RandomState(seed).randint(0, 256, (150, 200, 3), np.uint8))
        for t in pipeline:
            res = t(res)
        assert [v.shape for v in res['inputs']] == [(3, 128, 128)] * 2
        batch.append(res)
    model.train()
    data = model.data_preprocessor(default_collate(batch), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())


def test_views():
    cfg = recipe.load(PATH)
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert recipe.transform_types(pipeline) == ['LoadImageFromFile', 'RandomFlip', 'MultiView',
                                                'PackInputs']
    assert pipeline[1]['prob'] == 0.5  # one flip, shared by the two views
    assert pipeline[2]['num_views'] == 2
    recipe.assert_values(recipe.find_transform(pipeline, 'RandomResizedCrop'),
                         dict(scale=128, crop_ratio_range=[0.3, 1.0],
                              aspect_ratio_range=[0.7, 1.4], interpolation='bicubic'))
    jitter = recipe.find_transform(pipeline, 'RandomApply')
    assert jitter['prob'] == 0.8
    recipe.assert_values(jitter['transforms'][0], dict(type='ColorJitter', brightness=0.4,
                                                       contrast=0.4, saturation=0.4, hue=0.1))
    assert recipe.find_transform(pipeline, 'RandomGrayscale')['prob'] == 0.25
    recipe.assert_values(cfg.model.data_preprocessor, dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True))


def test_optimizer_and_batch():
    cfg = recipe.load(PATH)
    assert recipe.name_gpus_batch(PATH) == (4, 120) and recipe.total_batch(cfg, 4) == 480
    recipe.assert_values(recipe.optimizer(cfg), dict(type='Adam', lr=2e-4, betas=[0.8, 0.999],
                                                     eps=1e-8, weight_decay=1e-5))
    assert set(recipe.effective_weight_decay(cfg).values()) == {1e-5}
    assert cfg.train_cfg.max_epochs == 50


def _lrs(scheduler_cfg, steps):
    from mmengine.registry import PARAM_SCHEDULERS
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = PARAM_SCHEDULERS.build(dict(recipe.plain(scheduler_cfg), optimizer=opt))
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    return out


def test_schedule_reproduces_the_official_loop():
    cfg = recipe.load(PATH)
    warmup, multistep = recipe.schedulers(cfg)
    assert warmup['by_epoch'] is False and multistep['by_epoch'] is True
    # the official warm-up, per update t: min(1, (t + 1) / 500)
    official = [min(1.0, (t + 1) / 500) for t in range(600)]
    assert max(abs(a - b) for a, b in zip(_lrs(warmup, 600), official)) < 1e-12
    # the official epochs: epoch 0 at the base lr, then scheduler.step(e - 1) (closed form)
    # sets epoch e to gamma ** bisect_right([30, 45], e - 1)
    official = [1.0] + [0.2 ** bisect.bisect_right([30, 45], e - 1) for e in range(1, 50)]
    got = _lrs(multistep, 50)
    assert max(abs(a - b) for a, b in zip(got, official)) < 1e-12
