# Distillation baseline of ClusterFit's control experiment (Yan et al. 2020, Fig. 6), Fashion-MNIST:
# the same network, data and schedule as the fit step (clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py),
# trained FROM SCRATCH on N_pre's SOFT predictions instead of hard cluster ids.  Only three things
# change: the dataset serves a soft target per image (SoftLabelDataset, gt_score), the loss is
# Hinton's T^2 * KL(p_teacher || softmax(s / T)), and the targets file.
#   python tools/clusterfit.py soft-targets \
#       --clusters work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist --temperature 0.1 \
#       --out-dir work_dirs/clusterfit-distill_r18-w32_1xb64-3000it_fmnist
#   python tools/clusterfit.py distill \
#       configs/clusterfit/clusterfit-distill_r18-w32_1xb64-3000it_fmnist.py \
#       --soft-targets work_dirs/clusterfit-distill_r18-w32_1xb64-3000it_fmnist
# `distill` sets the annotation / soft-target files, the image folder, the number of classes and
# the loss temperature from the soft-target folder (soft_targets.json); plain tools/train.py reads
# the default files below, so there `temperature` must be the one the targets were made with.
_base_ = ['./clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py']

temperature = 0.1  # T of the soft targets: softmax(cos(feature, centroid) / 0.1) in the example

model = dict(
    head=dict(loss=dict(_delete_=True, type='DistillationKLLoss', temperature=temperature)))
train_dataloader = dict(
    dataset=dict(
        type='SoftLabelDataset',
        # written by `tools/clusterfit.py soft-targets --out-dir work_dirs/<this config's name>`
        ann_file='{{ fileDirname }}/../../work_dirs/{{ fileBasenameNoExtension }}/train_soft.txt',
        soft_targets='{{ fileDirname }}/../../work_dirs/{{ fileBasenameNoExtension }}/'
        'soft_targets.npy'))
