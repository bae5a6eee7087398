# DINO with ViT-S/16 on ImageNet, 16 GPUs x 64, 300 epochs: the official "boosted" run
# (facebookresearch/dino README, "Boosting DINO performance": tau_t 0.04 -> 0.07 over 30 epochs,
# per epoch, and norm_last_layer False); the rest as the vanilla ViT-S/16 file.
#   bash tools/dist_train.sh configs/dino/dino_vit-small-p16_16xb64-300e_in1k.py 16
_base_ = ['./dino_vit-small-p16_8xb64-100e_in1k.py']

num_gpus = 16  # run_with_submitit.py's default: 2 nodes x 8 GPUs
batch_size = 64  # per GPU
max_epochs = 300
warmup_epochs = 10

model = dict(
    head=dict(norm_last_layer=False),
    loss=dict(teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_epochs=30),
    freeze_last_layer_iters=1281167 // (num_gpus * batch_size))  # one epoch
optim_wrapper = dict(optimizer=dict(lr=5e-4 * batch_size * num_gpus / 256))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
    # weight decay 0.04 -> 0.4 (eta_min_ratio keeps the no-decay groups at 0)
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay', eta_min_ratio=10.0,
         T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
