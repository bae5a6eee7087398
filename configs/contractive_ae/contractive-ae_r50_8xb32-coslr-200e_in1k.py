# Contractive auto-encoder (Rifai et al., 2011), ResNet-50 encoder, ImageNet, 8 GPUs x 32.
# The paper trains one-layer encoders on MNIST-size inputs and gives no ImageNet recipe: the code
# layer, loss and lambda follow its reference code (lisa-lab/DeepLearningTutorials code/cA.py:
# 500 sigmoid units, cross-entropy summed per image on [0, 1] inputs, contraction_level 0.1);
# the deep encoder's Jacobian is estimated by random projections (ContractivePenalty); data,
# batch, schedule, optimizer, backbone, decoder and loss are the denoising auto-encoder's config
# without the corruption (sources of every value: configs/contractive_ae/README.md).
#   bash tools/dist_train.sh configs/contractive_ae/contractive-ae_r50_8xb32-coslr-200e_in1k.py 8
_base_ = ['../dae/dae_r50_8xb32-coslr-200e_in1k.py']

model = dict(
    type='ContractiveAE',
    code_layer=dict(type='AECodeLayer', code_dim=500, activation='sigmoid'),
    penalty=dict(type='ContractivePenalty', mode='input', num_projections=1, loss_weight=0.1))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=350, edge='short', backend='pillow'),
    dict(type='RandomCrop', crop_size=_base_.crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
