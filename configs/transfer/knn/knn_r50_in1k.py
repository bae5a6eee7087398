# Weighted kNN (tools/knn_eval.py) and per-layer probes (tools/analysis/layer_probe.py) of a
# ResNet-50 backbone on ImageNet-1k: the train split is the memory, the val split the queries,
# each image resized to 256 px (short side) and center-cropped to 224 px; k 20 and T 0.07 as
# DINO's eval_knn.py.  The model and the normalisation are the linear probe's.
#   python tools/knn_eval.py configs/transfer/knn/knn_r50_in1k.py CHECKPOINT
_base_ = ['../linear-probe_r50_8xb32-steplr-100e_in1k.py']

# the tools load CHECKPOINT themselves (random init for 'random')
model = dict(backbone=dict(init_cfg=None))

knn_loader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='train',
                 pipeline={{_base_.test_pipeline}}))
knn_eval = dict(
    train_dataloader=knn_loader,
    val_dataloader=dict(knn_loader, dataset=dict(knn_loader['dataset'], split='val')),
    ks=(20, ),
    temperature=0.07,
)
