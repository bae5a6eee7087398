# NPID on a folder of your own unlabeled images: the CPU-sized Fashion-MNIST recipe (32 px,
# half-width ResNet-18, gray-image jitter) with the memory bank sized by the data.
#   python tools/train.py configs/npid/npid_r18-w32_1xb64-3000it_folder.py \
#       --cfg-options train_dataloader.dataset.data_root=DIR
_base_ = ['./npid_r18-w32_1xb64-3000it_fmnist.py', '../_base_/datasets/folder_unlabeled.py']

model = dict(memory_bank=dict(length=None))  # None: one entry per training image
train_dataloader = dict(
    dataset=dict(_delete_=True, **_base_.folder_dataset, pipeline=_base_.train_pipeline))
knn_eval = dict(_delete_=True, **_base_.folder_knn_eval)
