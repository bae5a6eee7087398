# As finetune_r50_8xb32-steplr-100e_in1k.py with an MLP head: two linear layers with a ReLU between
# them (StackedLinearClsHead, hidden width 2048) on the pooled res5 features.
_base_ = ['./finetune_r50_8xb32-steplr-100e_in1k.py']

model = dict(
    head=dict(
        _delete_=True,
        type='StackedLinearClsHead',
        num_classes=1000,
        in_channels=2048,
        mid_channels=[2048],
        act_cfg=dict(type='ReLU'),
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
