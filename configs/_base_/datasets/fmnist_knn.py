# Weighted-kNN evaluation on Fashion-MNIST (train split = memory, test split = queries) at 32 px,
# read by tools/knn_eval.py and by KNNEvalHook (see pirl_r18-w32_1xb64-9000it-knn-60k_fmnist.py).
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
