# A supervised N_pre for ClusterFit: the fit recipe on the true labels of the train split.
#   python tools/train.py configs/clusterfit/supervised_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py']

num_classes = 10
model = dict(
    data_preprocessor=dict(num_classes=num_classes),
    head=dict(num_classes=num_classes, topk=(1, 5)))
train_dataloader = dict(dataset=dict(ann_file='meta/train.txt'))
