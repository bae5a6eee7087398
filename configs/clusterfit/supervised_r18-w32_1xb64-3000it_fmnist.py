# A supervised N_pre for ClusterFit on Fashion-MNIST: the fit recipe (ResNet-18 at half width,
# 32 px, 3000 iterations x 64, from scratch) trained on the true labels of the train split
# instead of cluster ids.  Cluster its features like any other N_pre:
#   python tools/train.py configs/clusterfit/supervised_r18-w32_1xb64-3000it_fmnist.py
#   python tools/clusterfit.py run configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py \
#       --pretrained-config configs/clusterfit/supervised_r18-w32_1xb64-3000it_fmnist.py \
#       --checkpoint work_dirs/supervised_r18-w32_1xb64-3000it_fmnist/iter_3000.pth --k 100 \
#       --work-dir work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist-supervised-npre
# (the label-noise control experiment, `tools/clusterfit.py noise-control`, trains its
# supervised N_pre on noisy labels of half the classes instead.)
_base_ = ['./clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py']

num_classes = 10
model = dict(
    data_preprocessor=dict(num_classes=num_classes),
    head=dict(num_classes=num_classes, topk=(1, 5)))
train_dataloader = dict(dataset=dict(ann_file='meta/train.txt'))
