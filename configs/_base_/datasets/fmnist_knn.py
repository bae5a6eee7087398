# Weighted-kNN evaluation on Fashion-MNIST (train split = memory, test split = queries), read by
# tools/knn_eval.py and usable by KNNEvalHook in a config that inherits this file:
#   custom_hooks = [dict(type='KNNEvalHook', interval=450, by_epoch=False,
#                        train_dataloader={{_base_.knn_eval.train_dataloader}},
#                        val_dataloader={{_base_.knn_eval.val_dataloader}})]
# (configs/pirl/pirl_r18-w32_1xb64-9000it-knn-60k_fmnist.py does exactly this)
# Protocol: L2-normalised globally pooled last-stage features, weighted voting exp(s/T), T=0.07,
# k in (20, 200).  Images are resized to 32 px (the resolution our Fashion-MNIST configs train at).
_base_ = ['./fmnist_png.py']

knn_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='PackInputs'),
]
knn_eval = dict(
    train_dataloader=dict(
        batch_size=256,
        num_workers=2,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate'),
        dataset=dict(
            type='ImageNet',
            data_root={{_base_.fmnist_data_root}},
            split='train',
            metainfo={{_base_.fmnist_metainfo}},
            pipeline=knn_pipeline)),
    val_dataloader=dict(
        batch_size=256,
        num_workers=2,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate'),
        dataset=dict(
            type='ImageNet',
            data_root={{_base_.fmnist_data_root}},
            split='val',
            metainfo={{_base_.fmnist_metainfo}},
            pipeline=knn_pipeline)),
    ks=(20, 200),
    temperature=0.07,
)
