"""ODC's ImageNet recipe pinned to mmselfsup's (open-mmlab/mmselfsup, branches 0.x and 1.x hold
the same values; 1.x paths below)."""
import numpy as np
from mmengine.registry import DefaultScope

from mmssl_ext.registry import MODELS
from tests.configs import recipe as R

CFG = 'odc/odc_r50_8xb64-440e_in1k.py'


def test_batch_optimizer_schedule():
    cfg = R.load(CFG)
    # configs/selfsup/_base_/datasets/imagenet_odc.py: train_dataloader batch_size=64, 8 GPUs
    assert R.name_gpus_batch(CFG) == (8, 64) and R.total_batch(cfg, 8) == 512
    # configs/selfsup/odc/odc_resnet50_8xb64-steplr-440e_in1k.py: optimizer, paramwise_cfg
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=0.06, momentum=0.9,
                                           weight_decay=1e-5))
    assert not R.optimizer(cfg).get('nesterov', False)
    assert R.plain(cfg.optim_wrapper.paramwise_cfg) == {'custom_keys': {'head': {'momentum': 0.}}}
    # ... no norm / bias exclusion: every parameter decays
    assert set(R.effective_weight_decay(cfg).values()) == {1e-5}
    # ... param_scheduler MultiStepLR milestones=[400] gamma=0.4; train_cfg max_epochs=440
    (sched, ) = R.schedulers(cfg)
    R.assert_values(sched, dict(type='MultiStepLR', by_epoch=True, milestones=[400], gamma=0.4))
    R.assert_values(cfg.train_cfg, dict(type='EpochBasedTrainLoop', max_epochs=440))


def test_model_memory_and_clustering():
    cfg = R.load(CFG)
    model = cfg.model
    # configs/selfsup/_base_/models/odc.py: backbone, neck, head, memory_bank
    R.assert_values(model.backbone, dict(type='ResNet', depth=50, norm_cfg={'type': 'SyncBN'}))
    R.assert_values(model.neck, dict(type='ODCNeck', in_channels=2048, hid_channels=512,
                                     out_channels=256, with_avg_pool=True))
    R.assert_values(model.head, dict(num_classes=10000, in_channels=256))
    R.assert_values(model.memory_bank, dict(type='ODCMemory', length=1281167, feat_dim=256,
                                            momentum=0.5, num_classes=10000,
                                            min_cluster_size=20))
    # imagenet_odc.py: ODCHook reweight_pow=0.5, deal_with_small_clusters_interval=1;
    # DeepClusterHook clustering=dict(type='Kmeans', k=10000, pca_dim=-1) (no PCA),
    # mmselfsup/utils/clustering.py: niter 20
    assert model.reweight_pow == 0.5
    (hook, ) = [h for h in cfg.custom_hooks if h.type == 'ODCHook']
    R.assert_values(hook, dict(niter=20, pca_dim=None, small_cluster_interval=1))
    # (mmselfsup's max_points_per_centroid=10000000; faiss's default 256 x K exceeds N here)
    assert hook.get('max_points_per_centroid') is None and 256 * 10000 > 1281167
    # extract_pipeline: ResizeEdge 256 (short edge), CenterCrop 224
    R.assert_values(R.find_transform(hook.pipeline, 'ResizeEdge'), dict(scale=256, edge='short'))
    R.assert_values(R.find_transform(hook.pipeline, 'CenterCrop'), dict(crop_size=224))


def test_neck_layers_are_odc_necks():
    """mmselfsup/models/necks/odc_neck.py: fc - BN(momentum=0.001, affine=False) - ReLU -
    Dropout() (p 0.5) - fc - ReLU."""
    neck_cfg = dict(R.plain(R.load(CFG).model.neck), norm_cfg=dict(type='BN1d'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        neck = MODELS.build(neck_cfg)
    assert neck.bn0.momentum == 0.001 and not neck.bn0.affine
    assert neck.dropout.p == 0.5 and neck.last_relu
    assert (neck.fc0.in_features, neck.fc0.out_features) == (2048, 512)
    assert (neck.fc1.in_features, neck.fc1.out_features) == (512, 256)


def test_augmentation():
    pipeline = R.load(CFG).train_dataloader.dataset.pipeline
    # imagenet_odc.py train_pipeline: RandomResizedCrop(224), RandomFlip(0.5),
    # RandomRotation(degrees=2), ColorJitter(0.4, 0.4, 1.0, 0.5), RandomGrayscale(0.2)
    assert R.transform_types(pipeline)[1:-1] == [
        'RandomResizedCrop', 'RandomFlip', 'Rotate', 'ColorJitter', 'RandomGrayscale']
    crop = R.find_transform(pipeline, 'RandomResizedCrop')
    ratio_range = tuple(R.build_transform(crop).crop_ratio_range)
    rotate = R.build_transform(R.find_transform(pipeline, 'Rotate'))
    assert crop['scale'] == 224 and ratio_range == (0.08, 1.0)
    assert R.find_transform(pipeline, 'RandomFlip')['prob'] == 0.5
    R.assert_values(R.find_transform(pipeline, 'ColorJitter'),
                    dict(brightness=0.4, contrast=0.4, saturation=1.0, hue=0.5))
    R.assert_values(R.find_transform(pipeline, 'RandomGrayscale'),
                    dict(prob=0.2, keep_channels=True, channel_weights=[0.114, 0.587, 0.2989]))
    # torchvision's RandomRotation(2): always applied, angle uniform in [-2, 2], NEAREST, fill 0
    assert rotate.prob == 1.0 and rotate.pad_val == 0 and rotate.interpolation == 'nearest'
    np.random.seed(0)
    angles = np.array([rotate.random_negative(rotate.random_magnitude()) for _ in range(4000)])
    assert angles.min() >= -2 and angles.max() <= 2
    hist = np.histogram(angles, bins=8, range=(-2, 2))[0]
    assert hist.min() > 0.8 * 4000 / 8 and hist.max() < 1.2 * 4000 / 8  # uniform
    img = np.full((9, 9, 3), 255, np.uint8)
    out = rotate.transform(dict(img=img.copy()))['img']
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}  # nearest, black fill
