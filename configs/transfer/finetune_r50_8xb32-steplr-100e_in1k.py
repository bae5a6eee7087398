# ImageNet full fine-tune of an R50 checkpoint of ours with a linear head: mmpretrain's standard
# ResNet-50 recipe from the pretrained backbone, SyncBN.
#   bash tools/dist_train.sh configs/transfer/finetune_r50_8xb32-steplr-100e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/pirl_r50_8xb32/epoch_200.pth
_base_ = [
    'mmpretrain::resnet/resnet50_8xb32_in1k.py',
    '../_base_/transfer/pretrained_check.py',
]

model = dict(
    backbone=dict(
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))
