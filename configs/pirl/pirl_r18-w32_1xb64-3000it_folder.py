# PIRL (jigsaw) on a folder of your own unlabeled images: the CPU-sized Fashion-MNIST recipe
# (32 px, half-width ResNet-18, gray-image jitter) with the memory bank sized by the data.
#   python tools/train.py configs/pirl/pirl_r18-w32_1xb64-3000it_folder.py \
#       --cfg-options train_dataloader.dataset.data_root=DIR
# README.md, "Train on your own images", has the file list, evaluation and ClusterFit steps.
_base_ = ['./pirl_r18-w32_1xb64-3000it_fmnist.py', '../_base_/datasets/folder_unlabeled.py']

model = dict(memory_bank=dict(length=None))  # None: one entry per training image
train_dataloader = dict(
    dataset=dict(_delete_=True, **_base_.folder_dataset, pipeline=_base_.train_pipeline))
knn_eval = dict(_delete_=True, **_base_.folder_knn_eval)
