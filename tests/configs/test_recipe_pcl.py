"""PCL v2's ImageNet config pinned to the official code.

Reference: salesforce/PCL, main_pcl.py (arguments with README.md's PCL v2 command:
--lr 0.03 --batch-size 256 --temperature 0.2 --mlp --aug-plus --cos; train, run_kmeans,
compute_features, eval_augmentation, adjust_learning_rate) and pcl/builder.py (MoCo).
"""
from tests.configs import recipe as R

CFG = 'pcl/pcl-v2_r50_8xb32-200e_in1k.py'


def test_batch_optimizer_schedule():
    cfg = R.load(CFG)
    # --batch-size 256 over the GPUs, --lr 0.03, --momentum 0.9, --wd 1e-4 on every parameter
    assert R.name_gpus_batch(CFG) == (8, 32) and R.total_batch(cfg, 8) == 256
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=0.03, momentum=0.9,
                                           weight_decay=1e-4))
    assert set(R.effective_weight_decay(cfg).values()) == {1e-4}
    # --cos: lr * 0.5 * (1 + cos(pi * epoch / epochs)), per epoch; --epochs 200
    assert R.schedulers(cfg) == [dict(type='CosineAnnealingLR', T_max=200, by_epoch=True,
                                      begin=0, end=200)]
    assert cfg.train_cfg.max_epochs == 200
    assert cfg.train_dataloader.drop_last is True  # DataLoader(..., drop_last=True)


def test_model_and_prototypes():
    model = R.load(CFG).model
    # builder.MoCo(resnet50, --low-dim 128, --pcl-r 16384, --moco-m 0.999, --temperature 0.2,
    # --mlp: fc -> Linear(2048, 2048), ReLU, Linear(2048, 128))
    R.assert_values(model.backbone, dict(type='ResNet', depth=50))
    R.assert_values(model.neck, dict(type='MoCoV2Neck', in_channels=2048, hid_channels=2048,
                                     out_channels=128))
    R.assert_values(model, dict(type='PCL', queue_len=16384, feat_dim=128, momentum=0.001))
    assert model.head.temperature == 0.2
    # --num-cluster 25000,50000,100000; sample(neg_proto_id, self.r): r = 16384 negatives
    assert model.num_clusters == [25000, 50000, 100000]
    assert model.num_negative_prototypes == 16384 and model.num_samples == 1281167


def test_clustering():
    cfg = R.load(CFG)
    (hook, ) = [h for h in cfg.custom_hooks if h.type == 'PCLHook']
    # --warmup-epoch 20; clustering before every later epoch; run_kmeans: niter 20, nredo 5,
    # seed = index of the granularity, max_points_per_centroid 1000
    R.assert_values(hook, dict(warmup_epochs=20, interval=1, niter=20, nredo=5,
                               max_points_per_centroid=1000, seed=0))
    # eval_loader: batch_size * 5 per GPU; eval_augmentation: Resize(256), CenterCrop(224)
    assert hook.batch_size == 32 * 5
    R.assert_values(R.find_transform(hook.pipeline, 'ResizeEdge'), dict(scale=256, edge='short'))
    R.assert_values(R.find_transform(hook.pipeline, 'CenterCrop'), dict(crop_size=224))


def test_augmentation():
    pipeline = R.load(CFG).train_dataloader.dataset.pipeline
    # --aug-plus: RandomResizedCrop(224, scale=(0.2, 1.)), RandomApply(ColorJitter(0.4, 0.4,
    # 0.4, 0.1), p=0.8), RandomGrayscale(p=0.2), RandomApply(GaussianBlur([.1, 2.]), p=0.5),
    # RandomHorizontalFlip(); TwoCropsTransform
    assert R.find_transform(pipeline, 'MultiView')['num_views'] == 2
    crop = R.build_transform(R.find_transform(pipeline, 'RandomResizedCrop'))
    assert (crop.scale, tuple(crop.crop_ratio_range)) == ((224, 224), (0.2, 1.0))
    R.assert_values(R.find_transform(pipeline, 'ColorJitter'),
                    dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1))
    assert R.find_transform(pipeline, 'RandomGrayscale')['prob'] == 0.2
    R.assert_values(R.find_transform(pipeline, 'GaussianBlur'),
                    dict(magnitude_range=(0.1, 2.0), prob=0.5))
    assert R.find_transform(pipeline, 'RandomFlip')['prob'] == 0.5
