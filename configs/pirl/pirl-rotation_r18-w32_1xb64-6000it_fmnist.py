# PIRL with rotation as the transform on Fashion-MNIST, sized for 2 CPU cores: the main job of
# scripts/main.sh.  The jigsaw main job's recipe (pirl_r18-w32_1xb64-3000it_fmnist.py) with the
# patches replaced by the whole 32 px image rotated by 0/90/180/270 degrees, the iterations that
# the cheaper sample buys in the same time, and half the learning rate; how the settings were
# chosen (on a held-out part of the training set): configs/pirl/README.md, "Main job".
#   python tools/train.py configs/pirl/pirl-rotation_r18-w32_1xb64-6000it_fmnist.py
_base_ = ['./pirl_r18-w32_1xb64-3000it_fmnist.py']

num_train_images = 20000
max_iters = 6000

model = dict(
    transform_neck=dict(_delete_=True, type='LinearNeck', in_channels=256, out_channels=128,
                        gap_dim=2, norm_cfg=None),
    memory_bank=dict(length=num_train_images),
    loss_lambda=0.75)

crop = dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.5, 1.), backend='pillow')
image_pipeline = [crop, *_base_.patch_pipeline, dict(type='RandomFlip', prob=0.5)]
transform_pipeline = [crop, dict(type='RandomRotation90'), *_base_.patch_pipeline]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PIRLViews', image_pipeline=image_pipeline,
         transform_pipeline=transform_pipeline),
    dict(type='PackInputs', algorithm_keys=['rot_label']),
]
train_dataloader = dict(dataset=dict(indices=num_train_images, pipeline=train_pipeline))

# half the jigsaw job's lr (chosen on the holdout: configs/pirl/README.md, "Main job")
optim_wrapper = dict(optimizer=dict(lr=0.015))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=3000))
channels_last = True
