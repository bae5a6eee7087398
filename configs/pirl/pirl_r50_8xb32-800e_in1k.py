# PIRL, 800 epochs (the paper's longer schedule); everything else as pirl_r50_8xb32.py.
#   bash tools/dist_train.sh configs/pirl/pirl_r50_8xb32-800e_in1k.py 8
_base_ = ['./pirl_r50_8xb32.py']
max_epochs = 800
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
