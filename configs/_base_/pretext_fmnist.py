# The Fashion-MNIST budget every pretext method shares with PIRL's jigsaw main job, so that their
# kNN numbers compare like for like.  mmengine forbids a key in two bases, so the values are
# variables that each method's config applies, as in
# configs/rotation/rotation_r18-w32_1xb64-3000it_fmnist.py.
_base_ = ['./datasets/fmnist_knn.py']

fmnist_num_train_images = 10000
fmnist_batch_size = 64
fmnist_max_iters = 3000

fmnist_backbone = dict(depth=18, stem_channels=32, base_channels=32, norm_cfg=dict(type='BN'))
# gray images: saturation, hue and grayscale conversion are no-ops, so only these are jittered
fmnist_color_jitter = [
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
         prob=0.8),
]
fmnist_train_dataloader = dict(
    batch_size=fmnist_batch_size, num_workers=2, persistent_workers=True)
fmnist_dataset = dict(
    indices=fmnist_num_train_images,
    data_root={{_base_.fmnist_data_root}},
    metainfo={{_base_.fmnist_metainfo}})
fmnist_optim_wrapper = dict(
    optimizer=dict(lr=0.03, momentum=0.9, weight_decay=1e-4, nesterov=False))
fmnist_param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=fmnist_max_iters - 100, by_epoch=False, begin=100,
         end=fmnist_max_iters),
]
fmnist_train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=fmnist_max_iters)
fmnist_default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(by_epoch=False, interval=1000, max_keep_ckpts=3))
fmnist_log_processor = dict(by_epoch=False)
fmnist_randomness = dict(seed=0)
