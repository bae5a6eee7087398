# Jigsaw puzzles on Fashion-MNIST with exactly the tiles and budget of PIRL's jigsaw main job, for
# the per-layer comparison with PIRL in configs/jigsaw/README.md.
#   python tools/train.py configs/jigsaw/jigsaw_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./jigsaw_r50_8xb32-90e_in1k.py', '../_base_/pretext_fmnist.py']

num_permutations = 1000
model = dict(
    backbone=_base_.fmnist_backbone,
    head=dict(in_channels=256, num_classes=num_permutations, input_channels=128,
              hidden_channels=512))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='JigsawPatches', grid=3, crop_size=63, crop_scale=(0.6, 1.0), patch_size=16,
         num_permutations=num_permutations, permutation_seed=0,
         permutation_method='max_avg_hamming', patch_pipeline=_base_.fmnist_color_jitter),
    dict(type='PackInputs', input_key='patches', algorithm_keys=['jigsaw_label']),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
optim_wrapper = _base_.fmnist_optim_wrapper
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
