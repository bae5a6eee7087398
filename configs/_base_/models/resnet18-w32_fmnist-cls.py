# The Fashion-MNIST pre-training backbone of our configs (ResNet-18 at half width: stem and base
# 32 channels, 256-d last stage) as an mmpretrain ImageClassifier with a linear head.  The backbone
# starts from a checkpoint of ours, given on the command line:
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/EXP/iter_3000.pth
# (a tools/extract_backbone.py file needs model.backbone.init_cfg.prefix=None as well).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=18,
        stem_channels=32,
        base_channels=32,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=256,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
