# PIRL (jigsaw) on a folder of your own unlabeled images with the ImageNet recipe
# (pirl_r50_8xb32.py: ResNet-50, 224 px, 200 epochs); the memory bank is sized by the data.
#   bash tools/dist_train.sh configs/pirl/pirl_r50_8xb32-200e_folder.py 8 \
#       --cfg-options train_dataloader.dataset.data_root=DIR
_base_ = ['./pirl_r50_8xb32.py', '../_base_/datasets/folder_unlabeled.py']

model = dict(memory_bank=dict(length=None))  # None: one entry per training image
train_dataloader = dict(
    dataset=dict(_delete_=True, **_base_.folder_dataset, pipeline=_base_.train_pipeline))
knn_eval = dict(_base_.folder_knn_eval, img_size=224, crop_ratio=0.875)
