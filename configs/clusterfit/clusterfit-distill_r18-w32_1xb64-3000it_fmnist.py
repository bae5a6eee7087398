# Distillation baseline of ClusterFit's control experiment (Yan et al. 2020, Fig. 6): the fit
# config trained on N_pre's soft predictions (SoftLabelDataset, DistillationKLLoss).
#   python tools/clusterfit.py distill \
#       configs/clusterfit/clusterfit-distill_r18-w32_1xb64-3000it_fmnist.py \
#       --soft-targets work_dirs/clusterfit-distill_r18-w32_1xb64-3000it_fmnist
_base_ = ['./clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py']

temperature = 0.1  # must match the soft targets' T; `distill` sets it

model = dict(
    head=dict(loss=dict(_delete_=True, type='DistillationKLLoss', temperature=temperature)))
train_dataloader = dict(
    dataset=dict(
        type='SoftLabelDataset',
        # written by `tools/clusterfit.py soft-targets --out-dir work_dirs/<this config's name>`
        ann_file='{{ fileDirname }}/../../work_dirs/{{ fileBasenameNoExtension }}/train_soft.txt',
        soft_targets='{{ fileDirname }}/../../work_dirs/{{ fileBasenameNoExtension }}/'
        'soft_targets.npy'))
