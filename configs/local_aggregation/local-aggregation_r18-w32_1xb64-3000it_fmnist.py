# Local Aggregation on Fashion-MNIST with the shared pretext budget: NPID's Fashion-MNIST choices
# (InfoNCE warm start, 4096 shared negatives), 3 k-means runs of K = 100 from the second epoch,
# 1024 background neighbours; configs/local_aggregation/README.md.
#   python tools/train.py configs/local_aggregation/local-aggregation_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['../npid/npid_r18-w32_1xb64-3000it_fmnist.py']

model = dict(
    type='LocalAggregation',
    num_clusters=[100, 100, 100],
    num_background=1024,
    la_loss=dict(type='LocalAggregationLoss', temperature=0.07))
custom_hooks = [
    dict(type='LocalAggregationHook', start_epoch=1, interval=1, niter=20, seed=1234),
]
