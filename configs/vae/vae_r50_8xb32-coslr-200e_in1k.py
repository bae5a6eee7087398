# Variational auto-encoder (Kingma & Welling, 2014), ResNet-50 encoder, ImageNet, 8 GPUs x 32.
# The paper trains MLPs on MNIST / Frey Face and gives no ImageNet recipe: latent size,
# likelihood and optimizer follow pytorch/examples vae/main.py (20 latents, Bernoulli likelihood
# on [0, 1] images summed per image, the closed-form KL, Adam lr 1e-3); data, batch, schedule,
# backbone and decoder are the denoising auto-encoder's config without the corruption (sources
# of every value: configs/vae/README.md).
#   bash tools/dist_train.sh configs/vae/vae_r50_8xb32-coslr-200e_in1k.py 8
_base_ = ['../dae/dae_r50_8xb32-coslr-200e_in1k.py']

model = dict(
    type='VariationalAE',
    posterior=dict(type='AEGaussianPosterior', latent_dim=20),
    # [0, 1] inputs (the base's preprocessor): the Bernoulli likelihood needs them
    loss=dict(_delete_=True, type='ELBOLoss', likelihood='bernoulli'),
    kl_weight=1.0,
    kl_warmup_iters=0,  # the plain ELBO; KL annealing is an option
    representation='backbone')

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=350, edge='short', backend='pillow'),
    dict(type='RandomCrop', crop_size=_base_.crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
