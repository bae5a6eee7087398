# mmpretrain's MoCo v2 ImageNet recipe, unchanged, run through our tools (for tools/knn_eval.py
# point knn_eval's data_root at data/imagenet/ and use 224 px).
#   bash tools/dist_train.sh configs/mocov2/mocov2_r50_8xb32-coslr-200e_in1k.py 8
_base_ = [
    'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py',
    '../_base_/default_runtime.py',  # our runtime (exact resume, guards)
]
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)
