# Weighted kNN of a ViT-S/16 backbone (mmpretrain's VisionTransformer 'deit-small', class token
# after the final norm, as DINO's eval_knn.py) on ImageNet-1k; data and protocol as
# knn_r50_in1k.py.
#   python tools/knn_eval.py configs/transfer/knn/knn_vit-small-p16_in1k.py CHECKPOINT
_base_ = ['./knn_r50_in1k.py']

model = dict(
    backbone=dict(_delete_=True, type='VisionTransformer', arch='deit-small', img_size=224,
                  patch_size=16, out_type='cls_token', final_norm=True, init_cfg=None),
    neck=None,
    head=dict(in_channels=384))
