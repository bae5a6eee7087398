# NPID++ on Fashion-MNIST with the shared pretext budget: the NPID Fashion-MNIST config with
# the NPID++ changes that apply at this scale: the largest negative set a 10000-image bank
# allows (9999, NPID: 4096; drawn for the whole batch as in the NPID config) and no weight
# decay on BatchNorm (VISSL's regularize_bn False).  The longer schedule does not apply: every
# method here has the same budget (configs/npid/README.md, "NPID++").
#   python tools/train.py configs/npid/npid-pp_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./npid_r18-w32_1xb64-3000it_fmnist.py']

model = dict(memory_bank=dict(num_negatives=_base_.fmnist_num_train_images - 1))
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
