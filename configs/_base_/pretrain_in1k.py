# What every ImageNet-1k pre-training config here shares: runtime, scope, plug-in, and an
# 8-GPU train dataloader; a method sets its model, pipeline, batch size and schedule.
_base_ = ['mmpretrain::_base_/default_runtime.py', './default_runtime.py']
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)
default_scope = 'mmpretrain'

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNet', data_root='data/imagenet/', split='train', pipeline=[]))
# every rank its own seed (seed + rank), as VISSL's set_seeds: ranks draw different bank negatives
randomness = dict(seed=None, deterministic=False, diff_rank_seed=True)
