# Our half-width ResNet-18 as an ImageClassifier with a linear head, initialised from a checkpoint:
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/EXP/iter_3000.pth
# (a tools/extract_backbone.py file also needs model.backbone.init_cfg.prefix=None).
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
