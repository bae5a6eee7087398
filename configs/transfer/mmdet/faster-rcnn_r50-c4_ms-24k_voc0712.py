# PASCAL VOC07+12 detection transfer, the PIRL paper's setting: Faster R-CNN R50-C4 trained on
# VOC07+12 trainval, tested on VOC07 test, 24k iterations (multi-scale 480-800 px), as mmselfsup's
# benchmark did.  mmdet's C4 config with the SSL-transfer changes:
#   * pytorch-style ResNet, RGB input normalised with ImageNet statistics (what our R50 configs
#     pre-train with), every stage trainable (frozen_stages=-1);
#   * SyncBN everywhere, trained (norm_eval=False), and res5 in the RoI head followed by an extra
#     norm (mmpretrain's ResLayerExtraNorm, Detectron2's Res5ROIHeadsExtraNorm);
#   * res1-4 load into the backbone and res5 into the RoI head, from the same checkpoint:
#   bash tools/dist_train.sh configs/transfer/mmdet/faster-rcnn_r50-c4_ms-24k_voc0712.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=CKPT \
#                     model.roi_head.shared_head.init_cfg.checkpoint=CKPT
# (single machine without GPUs: python tools/train.py ...; SyncBN then runs as BN).
_base_ = 'mmdet::pascal_voc/faster-rcnn_r50-caffe-c4_ms-18k_voc0712.py'
custom_imports = dict(
    imports=['mmssl_ext', 'mmpretrain.models.utils.res_layer_extra_norm'],
    allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    roi_head=dict(
        shared_head=dict(
            type='ResLayerExtraNorm',
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.'))))

max_iter = 24000
train_cfg = dict(max_iters=max_iter, val_interval=2000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_iter, by_epoch=False, milestones=[18000, 22000],
         gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000, max_keep_ckpts=2))

# res5 of the checkpoint goes to the RoI head, the rest to the backbone; the extra norm is new
custom_hooks = [
    dict(type='PretrainedCheckHook', require=True,
         allow_unexpected={'backbone': [r'layer4\.'],
                           'roi_head.shared_head': [r'(conv1|bn1|layer[1-3])\.']},
         allow_missing={'roi_head.shared_head': [r'norm\.']})
]
