"""DeepClusterHook and ODCHook in real training runs (tools/train.py's path), in one process and
on 2 gloo processes (``--launcher pytorch`` on the CPU).

Tiny runs: 12 images of the tiny tree, K = 3 clusters, 6 iterations; batch 4 in one process and
2 per rank on 2 ranks, so an epoch is 3 iterations either way and DeepCluster clusters before the
first iteration and after the third.  A recording hook takes the labels, the head and the batch's
dataset indices before every iteration, and the head after every step (before the clustering hook
of that iteration runs).
"""
import copy
import os
import os.path as osp

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import DefaultScope

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.clustering import kmeans
from mmssl_ext.datasets import samplers as samplers_mod
from mmssl_ext.datasets.samplers import ClusterUniformSampler
from mmssl_ext.engine.hooks.deepcluster_hook import build_extraction_loader
from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.models.memories import ODCMemory
from mmssl_ext.registry import HOOKS, MODELS
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO, free_port

DC_CFG = osp.join(REPO, 'configs/deepcluster/deepcluster_r18-w32_1xb64-3000it_fmnist.py')
ODC_CFG = osp.join(REPO, 'configs/odc/odc_r18-w32_1xb64-3000it_fmnist.py')
N_IMG, K, MAX_ITERS, EPOCH_LEN, PCA = 12, 3, 6, 3, 8


def _model(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module(force=True)
class _RecordClusteringHook(Hook):
    """Runs before the clustering hooks (HIGH < NORMAL); saves its records in after_train."""
    priority = 'HIGH'

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.before, self.after = {}, {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = _model(runner)
        rec = dict(idx=[int(ds.sample_idx) for ds in data_batch['data_samples']],
                   state={k: v.detach().clone() for k, v in model.state_dict().items()})
        self.before[runner.iter] = rec

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        head = _model(runner).head.fc
        self.after[runner.iter] = dict(w=head.weight.detach().clone(),
                                       b=head.bias.detach().clone())

    def after_train(self, runner):
        hook = [h for h in runner.hooks if type(h).__name__ in ('DeepClusterHook', 'ODCHook')][0]
        torch.save(dict(before=self.before, after=self.after, world_size=get_world_size(),
                        clustered=list(getattr(hook, 'clustered_epochs', [])),
                        sampler_seed=getattr(runner.train_dataloader.sampler, 'seed', None)),
                   osp.join(self.out_dir, f'rank{get_rank()}.pth'))


def _dc_opts(tree, batch_size, workers=0):
    return [f'train_dataloader.dataset.data_root={tree}',
            f'train_dataloader.batch_size={batch_size}',
            f'train_dataloader.num_workers={workers}', 'train_dataloader.persistent_workers=False',
            f'train_dataloader.dataset.indices={N_IMG}', f'model.num_samples={N_IMG}',
            f'model.head.num_classes={K}', f'custom_hooks.0.pca_dim={PCA}',
            'custom_hooks.0.num_workers=0', 'custom_hooks.0.batch_size=8',
            f'train_cfg.max_iters={MAX_ITERS}', f'default_hooks.checkpoint.interval={EPOCH_LEN}',
            'default_hooks.logger.interval=1']


def _odc_opts(tree, batch_size):
    return [f'train_dataloader.dataset.data_root={tree}',
            f'train_dataloader.batch_size={batch_size}',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            f'train_dataloader.dataset.indices={N_IMG}', f'model.memory_bank.length={N_IMG}',
            f'model.memory_bank.num_classes={K}', f'model.head.num_classes={K}',
            'model.memory_bank.min_cluster_size=3', 'custom_hooks.0.num_workers=0',
            'custom_hooks.0.batch_size=8', 'train_cfg.max_iters=4',
            'default_hooks.checkpoint.interval=4', 'default_hooks.logger.interval=1']


def _run(config, opts, work, out_dir, launcher='none', extra=None):
    args = train_api.parse_args([config, '--work-dir', work, '--launcher', launcher,
                                 '--cfg-options', *opts])
    cfg = train_api.merge_args(load_config(args.config), args)
    if extra:
        cfg.merge_from_dict(extra)
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='_RecordClusteringHook',
                                                      out_dir=out_dir)]
    cfg.experiment_name = f'{osp.basename(work)}_{launcher}_{os.getpid()}'
    runner = train_api.build_runner(cfg)
    runner.train()
    return runner


def _ddp_worker(rank, port, config, opts, work, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE='2')
    torch.set_num_threads(1)
    import mmengine.runner.loops as loops
    from tests.conftest import _NoSleepTime
    loops.time = _NoSleepTime()  # no 2 s pause at every epoch restart
    _run(config, opts, work, out_dir, launcher='pytorch')


def _spawn(config, opts, tmp_path):
    out = tmp_path / 'records'
    out.mkdir()
    mp.spawn(_ddp_worker, args=(free_port(), config, opts, str(tmp_path / 'work'), str(out)),
             nprocs=2, join=True)
    return [torch.load(out / f'rank{r}.pth', weights_only=False) for r in range(2)]


# ---------------------------------------------------------------------------- checks


def _check_deepcluster_records(recs, monkeypatch):
    world = len(recs)
    for rec in recs:
        assert rec['world_size'] == world and rec['clustered'] == [0, 1]
    r0 = recs[0]
    labels = {it: r0['before'][it]['state']['pseudo_labels'] for it in range(MAX_ITERS)}
    for it in range(MAX_ITERS):
        for rec in recs[1:]:  # every rank holds the same labels and the same head
            for key in ('pseudo_labels', 'head.fc.weight', 'head.fc.bias'):
                assert torch.equal(rec['before'][it]['state'][key], r0['before'][it]['state'][key])
        lab = labels[it]
        assert lab.min() >= 0 and (torch.bincount(lab, minlength=K) > 0).all()
    # labels only change at the epoch boundary
    assert all(torch.equal(labels[i], labels[0]) for i in range(EPOCH_LEN))
    assert all(torch.equal(labels[i], labels[EPOCH_LEN]) for i in range(EPOCH_LEN, MAX_ITERS))
    # the head: trained during an epoch, re-initialised (zero bias, new small weights) at the
    # boundary, on every rank the same draw
    trained = r0['after'][EPOCH_LEN - 1]
    fresh = r0['before'][EPOCH_LEN]['state']
    assert not torch.equal(trained['b'], torch.zeros(K))
    assert torch.equal(fresh['head.fc.bias'], torch.zeros(K))
    assert not torch.allclose(fresh['head.fc.weight'], trained['w'])
    assert float(fresh['head.fc.weight'].std()) < 0.02
    # the sampler: each epoch, rank r's batches are positions r, r + W, ... of the uniform list
    monkeypatch.setattr(samplers_mod, 'get_dist_info', lambda: (0, world))
    for epoch in range(MAX_ITERS // EPOCH_LEN):
        its = range(epoch * EPOCH_LEN, (epoch + 1) * EPOCH_LEN)
        ref = ClusterUniformSampler(list(range(N_IMG)), seed=r0['sampler_seed'])
        ref.set_labels(labels[epoch * EPOCH_LEN])
        ref.set_epoch(epoch)
        glob = ref.global_indices().tolist()
        drawn = []
        for rank, rec in enumerate(recs):
            got = [i for it in its for i in rec['before'][it]['idx']]
            assert got == glob[rank::world], (epoch, rank)
            drawn += got
        counts = torch.bincount(labels[epoch * EPOCH_LEN][drawn], minlength=K)
        assert counts.tolist() == [N_IMG // K] * K  # uniform over the clusters


def _reference_clustering(opts, state, epoch):
    """Labels of a k-means of the features the model with ``state`` extracts, in this process."""
    args = train_api.parse_args([DC_CFG, '--cfg-options', *opts])
    cfg = train_api.merge_args(load_config(args.config), args)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(copy.deepcopy(cfg.model))
        model.load_state_dict(state)

        class _R:  # what build_extraction_loader reads from a runner
            seed = 0
        _R.cfg = cfg
        loader = build_extraction_loader(_R, cfg.custom_hooks[0].pipeline, 8, 0)
        feats, _ = extract_features(model, loader, normalize=False, progress=False)
    return torch.from_numpy(kmeans(feats, K, niter=20, seed=epoch, pca_dim=PCA, whiten=True,
                                   gpu=False).assignments)


@pytest.mark.parametrize('workers', [0, 1])
def test_deepcluster_hook_single_process(tiny_tree, tmp_path, monkeypatch, workers):
    """With a worker process the loop draws the first epoch's indices when it is built, before
    the first clustering: the hook must restart the iterator (checked by the sampler check)."""
    opts = _dc_opts(tiny_tree, batch_size=4, workers=workers)
    work = tmp_path / 'work'
    runner = _run(DC_CFG, opts, str(work), str(tmp_path))
    rec = torch.load(tmp_path / 'rank0.pth', weights_only=False)
    _check_deepcluster_records([rec], monkeypatch)
    # the labels after the boundary are k-means (seed + epoch 1) of the features of the weights
    # at the boundary (the checkpoint of iteration 3 is written after the hook)
    ckpt = torch.load(work / f'iter_{EPOCH_LEN}.pth', map_location='cpu', weights_only=False)
    state = {k: v for k, v in ckpt['state_dict'].items()}
    assert torch.equal(state['pseudo_labels'], rec['before'][EPOCH_LEN]['state']['pseudo_labels'])
    assert torch.equal(_reference_clustering(opts, state, epoch=1), state['pseudo_labels'])
    # and the initial labels: k-means (seed 0) of the initial network's features
    init_state = dict(rec['before'][0]['state'])
    assert torch.equal(_reference_clustering(opts, init_state, epoch=0),
                       init_state['pseudo_labels'])
    assert torch.equal(runner.train_dataloader.sampler.labels, _model(runner).pseudo_labels)


def test_deepcluster_hook_two_gloo_processes(tiny_tree, tmp_path, monkeypatch):
    recs = _spawn(DC_CFG, _dc_opts(tiny_tree, batch_size=2), tmp_path)
    _check_deepcluster_records(recs, monkeypatch)
    # the initial clustering (same initial network on both ranks: DDP broadcasts rank 0's
    # weights, BatchNorm statistics are still the initial ones) equals the single-process one
    init_state = dict(recs[0]['before'][0]['state'])
    assert torch.equal(_reference_clustering(_dc_opts(tiny_tree, 2), init_state, epoch=0),
                       init_state['pseudo_labels'])


def test_deepcluster_hook_epoch_based_loop(tiny_tree, tmp_path, monkeypatch):
    """The ImageNet recipe's loop: clustering in before_train_epoch of epochs 0 and 1."""
    extra = dict(train_cfg=dict(_delete_=True, type='EpochBasedTrainLoop',
                                max_epochs=MAX_ITERS // EPOCH_LEN))
    runner = _run(DC_CFG, _dc_opts(tiny_tree, batch_size=4), str(tmp_path / 'work'),
                  str(tmp_path), extra=extra)
    assert type(runner.train_loop).__name__ == 'EpochBasedTrainLoop'
    _check_deepcluster_records([torch.load(tmp_path / 'rank0.pth', weights_only=False)],
                               monkeypatch)


def test_deepcluster_hook_needs_the_uniform_sampler(tiny_tree, tmp_path):
    opts = _dc_opts(tiny_tree, 4) + ["train_dataloader.sampler.type=DefaultSampler"]
    with pytest.raises(ValueError, match='ClusterUniformSampler'):
        _run(DC_CFG, opts, str(tmp_path / 'w'), str(tmp_path))
    # allowed with uniform_sampling=False
    _run(DC_CFG, opts + ['custom_hooks.0.uniform_sampling=False', 'train_cfg.max_iters=1'],
         str(tmp_path / 'w2'), str(tmp_path))


def test_hooks_reject_bad_arguments():
    from mmssl_ext.engine.hooks import DeepClusterHook, ODCHook
    with pytest.raises(ValueError, match='interval must be an int >= 1, got 0'):
        DeepClusterHook(pipeline=[dict(type='PackInputs')], interval=0)
    with pytest.raises(ValueError, match='pipeline must be a non-empty list'):
        ODCHook(pipeline=[])


# ---------------------------------------------------------------------------- ODC


def _reference_odc_init(opts, state):
    """The memory ODCHook builds from the initial network: k-means of the normalised neck
    embeddings, centroids = label means, small clusters dissolved."""
    args = train_api.parse_args([ODC_CFG, '--cfg-options', *opts])
    cfg = train_api.merge_args(load_config(args.config), args)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(copy.deepcopy(cfg.model))
        model.load_state_dict(state)
        model.eval()

        class _R:
            seed = 0
        _R.cfg = cfg
        loader = build_extraction_loader(_R, cfg.custom_hooks[0].pipeline, 8, 0)
        feats = []
        with torch.no_grad():
            for data in loader:
                data = model.data_preprocessor(data, False)
                feats.append(torch.nn.functional.normalize(model.embed(data['inputs']), dim=1))
    feats = torch.cat(feats)
    labels = torch.from_numpy(kmeans(feats, K, niter=20, seed=0, gpu=False).assignments)
    mem = ODCMemory(length=N_IMG, feat_dim=feats.shape[1], num_classes=K, min_cluster_size=3)
    mem.init_memory(feats, labels)
    mem.deal_with_small_clusters()
    return mem


def _check_odc_records(recs, opts):
    r0 = recs[0]
    for it in r0['before']:
        for rec in recs[1:]:
            for key in ('memory_bank.feats', 'memory_bank.labels', 'memory_bank.centroids'):
                assert torch.equal(rec['before'][it]['state'][key],
                                   r0['before'][it]['state'][key]), (it, key)
    state0 = r0['before'][0]['state']
    ref = _reference_odc_init(opts, dict(state0))
    assert torch.equal(state0['memory_bank.labels'], ref.labels)
    torch.testing.assert_close(state0['memory_bank.feats'], ref.feats, rtol=0, atol=1e-5)
    torch.testing.assert_close(state0['memory_bank.centroids'], ref.centroids, rtol=0, atol=1e-5)
    for it, rec in r0['before'].items():  # the online updates keep centroids = label means
        st = rec['state']
        feats, labels = st['memory_bank.feats'], st['memory_bank.labels']
        sizes = torch.bincount(labels, minlength=K)
        assert (sizes > 0).all(), (it, sizes)
        for c in range(K):
            torch.testing.assert_close(st['memory_bank.centroids'][c],
                                       feats[labels == c].mean(0), rtol=0, atol=1e-5)
    assert not torch.equal(r0['before'][3]['state']['memory_bank.feats'],
                           state0['memory_bank.feats'])


def test_odc_hook_single_process(tiny_tree, tmp_path):
    opts = _odc_opts(tiny_tree, 4)
    _run(ODC_CFG, opts, str(tmp_path / 'work'), str(tmp_path))
    _check_odc_records([torch.load(tmp_path / 'rank0.pth', weights_only=False)], opts)


def test_odc_hook_two_gloo_processes(tiny_tree, tmp_path):
    opts = _odc_opts(tiny_tree, 2)
    _check_odc_records(_spawn(ODC_CFG, opts, tmp_path), opts)


def test_odc_hook_requires_matching_memory_length(tiny_tree, tmp_path):
    opts = _odc_opts(tiny_tree, 4) + [f'model.memory_bank.length={N_IMG + 2}']
    with pytest.raises(ValueError, match=rf'model.memory_bank.length={N_IMG + 2} .* N={N_IMG}'):
        _run(ODC_CFG, opts, str(tmp_path / 'w'), str(tmp_path))
