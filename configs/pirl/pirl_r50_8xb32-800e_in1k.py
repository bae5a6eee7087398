# PIRL, 800 epochs: VISSL's pirl_jigsaw_4node_resnet50.yaml as it stands (num_epochs: 800);
# everything else as pirl_r50_8xb32.py.
#   bash tools/dist_train.sh configs/pirl/pirl_r50_8xb32-800e_in1k.py 8
_base_ = ['./pirl_r50_8xb32.py']
max_epochs = 800
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min_ratio=1e-3, by_epoch=True,
         begin=0, end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
