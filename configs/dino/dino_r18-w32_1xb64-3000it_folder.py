# DINO (ResNet) on a folder of your own unlabeled images: the CPU-sized Fashion-MNIST recipe
# (32 px global / 16 px local crops, half-width ResNet-18, gray-image jitter).
#   python tools/train.py configs/dino/dino_r18-w32_1xb64-3000it_folder.py \
#       --cfg-options train_dataloader.dataset.data_root=DIR
_base_ = ['./dino_r18-w32_1xb64-3000it_fmnist.py', '../_base_/datasets/folder_unlabeled.py']

train_dataloader = dict(
    dataset=dict(_delete_=True, **_base_.folder_dataset, pipeline=_base_.train_pipeline))
knn_eval = dict(_delete_=True, **_base_.folder_knn_eval)
