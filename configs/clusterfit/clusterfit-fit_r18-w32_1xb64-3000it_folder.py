# ClusterFit fit step on a folder of your own unlabeled images: the CPU-sized Fashion-MNIST fit
# (half-width ResNet-18 ImageClassifier from scratch, 32 px) on the cluster step's pseudo labels;
# `tools/clusterfit.py fit` points it at the cluster step's list, folder and K.  The cluster step
# reads the folder N_pre trained on (its config's train_dataloader) or --data-root DIR --unlabeled:
#   python tools/clusterfit.py cluster --config configs/pirl/pirl_r18-w32_1xb64-3000it_folder.py \
#       --checkpoint work_dirs/pirl_r18-w32_1xb64-3000it_folder/iter_3000.pth \
#       --cfg-options train_dataloader.dataset.data_root=DIR --k 100 \
#       --out-dir work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_folder
#   python tools/clusterfit.py fit \
#       configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_folder.py \
#       --clusters work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_folder
_base_ = ['./clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py',
          '../_base_/datasets/folder_unlabeled.py']

train_dataloader = dict(dataset=dict(
    data_root=_base_.folder_data_root,
    data_prefix='',
    # written by the cluster step into the work dir of this config
    ann_file='{{ fileDirname }}/../../work_dirs/{{ fileBasenameNoExtension }}/'
    'train_clusters.txt'))
knn_eval = dict(_delete_=True, **_base_.folder_knn_eval)
