# Full fine-tune on Fashion-MNIST with an MLP head (linear-ReLU-linear of the backbone's width on
# pooled res5 features); otherwise as finetune_r18-w32_1xb64-20e_fmnist.py.
_base_ = ['./finetune_r18-w32_1xb64-20e_fmnist.py']

model = dict(
    head=dict(
        _delete_=True,
        type='StackedLinearClsHead',
        num_classes=10,
        in_channels=256,
        mid_channels=[256],
        act_cfg=dict(type='ReLU'),
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
