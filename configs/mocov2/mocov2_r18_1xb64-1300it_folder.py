# mmpretrain's MoCo v2 on a folder of your own unlabeled images: the CPU-sized Fashion-MNIST
# recipe (32 px, ResNet-18, queue 4096, colour jitter + grayscale, no blur).
#   python tools/train.py configs/mocov2/mocov2_r18_1xb64-1300it_folder.py \
#       --cfg-options train_dataloader.dataset.data_root=DIR
_base_ = ['./mocov2_r18_1xb64-1300it_fmnist.py', '../_base_/datasets/folder_unlabeled.py']

train_dataloader = dict(
    dataset=dict(_delete_=True, **_base_.folder_dataset, pipeline=_base_.train_pipeline))
knn_eval = dict(_delete_=True, **_base_.folder_knn_eval)
