# What every ImageNet-1k self-supervised pre-training config here shares: mmpretrain's runtime,
# the scope, our plug-in, and an 8-GPU train dataloader over data/imagenet/ (shuffled,
# drop_last, default_collate, 8 workers).  A method's ImageNet config inherits it and sets its
# model, pipeline, per-GPU batch size, optimizer and schedule:
#     _base_ = ['../_base_/pretrain_in1k.py']
#     train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
_base_ = ['mmpretrain::_base_/default_runtime.py']
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
