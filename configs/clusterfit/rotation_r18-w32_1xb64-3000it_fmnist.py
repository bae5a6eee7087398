# A rotation-prediction N_pre for ClusterFit on Fashion-MNIST: the fit recipe (ResNet-18 at half
# width, 32 px, 3000 iterations x 64, from scratch) as a 4-way classifier of the rotation
# (0/90/180/270 degrees, our RandomRotation90 transform) applied to each image; the data set's own
# labels are replaced by the rotation label.  One random rotation per image; the full RotNet
# recipe (all four rotations of each image in one batch) is the rotation pretext method's.
#   python tools/train.py configs/clusterfit/rotation_r18-w32_1xb64-3000it_fmnist.py
#   python tools/clusterfit.py run configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py \
#       --pretrained-config configs/clusterfit/rotation_r18-w32_1xb64-3000it_fmnist.py \
#       --checkpoint work_dirs/rotation_r18-w32_1xb64-3000it_fmnist/iter_3000.pth --k 100 \
#       --work-dir work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist-rotation-npre
_base_ = ['./clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py']

num_classes = 4
model = dict(
    data_preprocessor=dict(num_classes=num_classes),
    head=dict(num_classes=num_classes, topk=(1, )))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.35, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # rotate, and make the index of the drawn angle the classification target
    dict(type='KeyMapper', transforms=[dict(type='RandomRotation90')],
         mapping=dict(img='img'), remapping=dict(img='img', rot_label='gt_label')),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(ann_file='meta/train.txt', pipeline=train_pipeline))
