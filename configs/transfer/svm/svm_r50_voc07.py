# VOC07 linear SVMs per layer (tools/svm_eval.py): the benchmark of Goyal et al. (2019) that
# PIRL (Figs. 9, 12) and ClusterFit (Fig. 2) report, as VISSL runs it
# (configs/config/benchmark/linear_image_classification/voc07/eval_resnet_8gpu_transfer_voc07_
# svm.yaml and low_shot_transfer/voc07/eval_resnet_8gpu_transfer_voc07_low_shot_svm.yaml):
# SVMs trained on trainval (5011 images), mAP on test (4952), images resized to 256 px (short
# side) then to 224 x 224, every layer average-pooled to about 9k dimensions.
#   python tools/svm_eval.py configs/transfer/svm/svm_r50_voc07.py CHECKPOINT [--low-shot]
# Data: mmpretrain's VOC layout, data/VOC2007/{JPEGImages,Annotations,ImageSets/Main/
# {trainval,test}.txt}; a class present only as 'difficult' objects is ignored at test time.
_base_ = ['../knn/knn_r50_in1k.py']

voc_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='Resize', scale=(224, 224)),
    dict(type='PackInputs'),
]
voc_loader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='VOC', data_root='data/VOC2007', split='trainval', pipeline=voc_pipeline))
# the analysis tools' data section: train = SVM-train split, val = test split (multi-label, so
# only tools/svm_eval.py reads it meaningfully)
knn_eval = dict(
    _delete_=True,
    train_dataloader=voc_loader,
    val_dataloader=dict(voc_loader, dataset=dict(voc_loader['dataset'], split='test')))
svm_eval = dict(
    costs=[0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0],
    # VISSL's AvgPool2d (kernel, stride, padding) per layer at 224 px: res2 256x6x6,
    # res3 512x4x4, res4 1024x3x3, res5 2048x2x2; VISSL pools conv1 before the max-pool
    # (112 px, (10, 10, 4)), our stem is after it (56 px): (5, 5, 2) gives the same 64x12x12
    pool_ops=dict(stem=(5, 5, 2), res2=(16, 8, 0), res3=(13, 5, 0), res4=(8, 3, 0),
                  res5=(6, 1, 0)),
    k_values=[1, 2, 4, 8, 16, 32, 64, 96],
    samples=[1, 2, 3, 4, 5],
)
