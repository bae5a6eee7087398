"""Local Aggregation's ImageNet config pinned to the official code.

Reference: neuroailab/LocalAggregation, exp_configs/la_final.json (res50_IR, res50_LA),
param_setter.py (get_config defaults, reg_loss, get_params_from_arg: the re-clustering every
NUM_BATCHES_PER_EPOCH steps), model/instance_model.py (LossBuilder, get_LA_loss, the memory
update), model/cluster_km.py (run_kmeans, Kmeans) and model/prep_utils.py (preprocessing_inst).
"""
from tests.configs import recipe as R

CFG = 'local_aggregation/local-aggregation_r50_8xb16-200e_in1k.py'


def test_batch_optimizer_schedule():
    cfg = R.load(CFG)
    # param_setter.py: --batch_size 128, --init_lr 0.03, MomentumOptimizer(momentum .9),
    # --weight_decay 1e-4 on every trainable variable but batch_normalization's (reg_loss)
    assert R.name_gpus_batch(CFG) == (8, 16) and R.total_batch(cfg, 8) == 128
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=0.03, momentum=0.9,
                                           weight_decay=1e-4, nesterov=False))
    decay = R.effective_weight_decay(cfg)
    assert decay['conv_weight'] == decay['linear_weight'] == 1e-4
    assert decay['norm_weight'] == decay['norm_bias'] == 0
    # la_final.json res50_LA: lr_boundaries "1522000,1895857", train_num_steps 2001800, at
    # 1281167 // 128 = 10009 steps per epoch: epochs 152.06, 189.4 and 200
    assert R.schedulers(cfg) == [dict(type='MultiStepLR', by_epoch=True, milestones=[152, 189],
                                      gamma=0.1)]
    assert [1522000 // 10009, 1895857 // 10009, 2001800 // 10009] == [152, 189, 200]
    assert cfg.train_cfg.max_epochs == 200


def test_model_and_clustering():
    cfg = R.load(CFG)
    model = cfg.model
    # la_final.json res50_*: model_type resnet50, 128-d output (instance_model.py), L2-normalised
    R.assert_values(model.backbone, dict(type='ResNet', depth=50))
    R.assert_values(model.neck, dict(type='LinearNeck', in_channels=2048, out_channels=128))
    # build_targets: MemoryBank(data_len 1281167, 128); LossBuilder instance_m 0.5
    R.assert_values(model.memory_bank, dict(length=1281167, feat_dim=128, momentum=0.5))
    # get_config: --instance_t 0.07, --instance_k 4096 (the background neighbours of
    # get_LA_loss; the noise samples of the IR warm start)
    R.assert_values(model.la_loss, dict(type='LocalAggregationLoss', temperature=0.07))
    assert model.num_background == 4096 and model.memory_bank.num_negatives == 4096
    R.assert_values(model.loss, dict(type='NCELoss', temperature=0.07))
    # la_final.json res50_LA: kmeans_k "30000" x 10
    assert model.num_clusters == [30000] * 10
    # res50_LA loads res50_IR at step 100090 = 10 epochs of 10009 steps; re-clustering every
    # NUM_BATCHES_PER_EPOCH steps; cluster_km.py: niter 20, max_points_per_centroid 10000000,
    # seed DEFAULT_SEED 1234 + run index
    (hook, ) = [h for h in cfg.custom_hooks if h.type == 'LocalAggregationHook']
    R.assert_values(hook, dict(start_epoch=10, interval=1, niter=20, seed=1234,
                               max_points_per_centroid=10000000))
    assert 100090 // 10009 == 10


def test_augmentation():
    pipeline = R.load(CFG).train_dataloader.dataset.pipeline
    # prep_utils.py preprocessing_inst: RandomSizedCrop (size_minval 0.2), ApplyGray(0.2),
    # ColorJitter (brightness / contrast / saturation 0.6-1.4, hue 0.4), random flip
    assert R.transform_types(pipeline) == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomGrayscale', 'ColorJitter',
        'RandomFlip', 'PackInputs']
    crop = R.build_transform(R.find_transform(pipeline, 'RandomResizedCrop'))
    assert (crop.scale, tuple(crop.crop_ratio_range)) == ((224, 224), (0.2, 1.0))
    assert R.find_transform(pipeline, 'RandomGrayscale')['prob'] == 0.2
    R.assert_values(R.find_transform(pipeline, 'ColorJitter'),
                    dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4))
