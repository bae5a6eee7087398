# The Fashion-MNIST PIRL config run 3x longer (2700 iterations, ~17 epochs of the 10k subset,
# ~30 min on 2 CPU cores) with online kNN every 450 iterations: the budget curve in
# benchmarks/pirl_budget.md (where PIRL overtakes a random backbone, raw pixels).
_base_ = ['./pirl_r18-w32_1xb64-900it_fmnist.py']

max_iters = 2700
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=900))
custom_hooks = [
    dict(type='KNNEvalHook', interval=450, by_epoch=False,
         train_dataloader={{_base_.knn_eval.train_dataloader}},
         val_dataloader={{_base_.knn_eval.val_dataloader}},
         ks=(20, 200), temperature=0.07)
]
