"""DeepCluster's ImageNet recipe pinned to the official code (facebookresearch/deepcluster
main.py, main.sh, clustering.py) and, for the ResNet-50 on Sobel input at 8 GPUs x 64, to
mmselfsup's configs/selfsup/deepcluster/deepcluster-sobel_resnet50_8xb64-steplr-200e_in1k.py
(open-mmlab/mmselfsup 1.x; 0.x the same values)."""
import inspect


from mmssl_ext.models.algorithms.deepcluster import DeepCluster
from tests.configs import recipe as R

CFG = 'deepcluster/deepcluster_r50_8xb64-200e_in1k.py'


def test_batch_optimizer_schedule():
    cfg = R.load(CFG)
    # mmselfsup _base_/datasets/imagenet_deepcluster.py: batch_size=64 on 8 GPUs
    assert R.name_gpus_batch(CFG) == (8, 64) and R.total_batch(cfg, 8) == 512
    # main.py / main.sh: --lr 0.05 for --batch 256, --wd -5 (10**-5), --momentum 0.9, SGD;
    # mmselfsup deepcluster_resnet50_8xb64-steplr-200e_in1k.py: lr=0.1 for 512, the same
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-5))
    assert not R.optimizer(cfg).get('nesterov', False)
    # main.py train(): the top layer has its own SGD without momentum (mmselfsup: custom_keys
    # head momentum 0); no norm / bias exclusion: every parameter decays
    assert R.plain(cfg.optim_wrapper.paramwise_cfg) == {'custom_keys': {'head': {'momentum': 0.}}}
    assert set(R.effective_weight_decay(cfg).values()) == {1e-5}
    # main.py: no lr schedule, --epochs 200 (mmselfsup: MultiStepLR at 400 of 200 epochs)
    (sched, ) = R.schedulers(cfg)
    R.assert_values(sched, dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=200))
    R.assert_values(cfg.train_cfg, dict(type='EpochBasedTrainLoop', max_epochs=200))


def test_model_and_clustering():
    cfg = R.load(CFG)
    model = cfg.model
    # main.sh --sobel (mmselfsup: ResNetSobel, 2 input channels); --k 10000
    assert model.data_preprocessor.type == 'SobelDataPreprocessor'
    R.assert_values(model.backbone, dict(type='ResNet', depth=50, in_channels=2))
    R.assert_values(model.head, dict(num_classes=10000, in_channels=2048))
    assert model.num_samples == 1281167
    # main.py: top_layer.weight.normal_(0, 0.01), bias zero, after every clustering
    assert 'head_init_std' not in model
    assert inspect.signature(DeepCluster).parameters['head_init_std'].default == 0.01
    # clustering.py: preprocess_features (PCA 256, eigen_power -0.5 = whitening, L2),
    # run_kmeans niter 20; main.py --reassign 1 (every epoch), UnifLabelSampler
    (hook, ) = [h for h in cfg.custom_hooks if h.type == 'DeepClusterHook']
    R.assert_values(hook, dict(interval=1, pca_dim=256, whiten=True, l2_normalize=True,
                               niter=20))
    assert hook.get('uniform_sampling', True) and hook.get('reinit_head', True)
    assert cfg.train_dataloader.sampler.type == 'ClusterUniformSampler'
    # main.py: features of Resize(256) + CenterCrop(224)
    R.assert_values(R.find_transform(hook.pipeline, 'ResizeEdge'), dict(scale=256, edge='short'))
    R.assert_values(R.find_transform(hook.pipeline, 'CenterCrop'), dict(crop_size=224))


def test_augmentation():
    pipeline = R.load(CFG).train_dataloader.dataset.pipeline
    # clustering.py cluster_assign: RandomResizedCrop(224), RandomHorizontalFlip() only
    # (mmselfsup adds rotation, colour jitter and grayscale; configs/deepcluster/README.md)
    assert R.transform_types(pipeline) == ['LoadImageFromFile', 'RandomResizedCrop',
                                           'RandomFlip', 'PackInputs']
    crop = R.find_transform(pipeline, 'RandomResizedCrop')
    ratio_range = tuple(R.build_transform(crop).crop_ratio_range)
    assert crop['scale'] == 224 and ratio_range == (0.08, 1.0)
    assert R.find_transform(pipeline, 'RandomFlip')['prob'] == 0.5
