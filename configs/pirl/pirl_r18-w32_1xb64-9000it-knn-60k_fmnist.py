# PIRL's budget curve on Fashion-MNIST (benchmarks/pirl_budget.md): the main-job recipe on all
# 60k training images for 9000 iterations, with online kNN every 1500 iterations.
#   python tools/train.py configs/pirl/pirl_r18-w32_1xb64-9000it-knn-60k_fmnist.py
_base_ = ['./pirl_r18-w32_1xb64-3000it_fmnist.py']

num_train_images = 60000
max_iters = 9000
model = dict(memory_bank=dict(length=num_train_images))
train_dataloader = dict(dataset=dict(indices=num_train_images))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=1500))
custom_hooks = [
    dict(type='KNNEvalHook', interval=1500, by_epoch=False,
         train_dataloader={{_base_.knn_eval.train_dataloader}},
         val_dataloader={{_base_.knn_eval.val_dataloader}},
         ks=(20, 200), temperature=0.07)
]
