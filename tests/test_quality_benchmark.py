"""benchmarks.quality.

The full-train budget: dropping a config's ``indices`` must resize what holds one entry per
training image (memory banks, DeepCluster's label array), else the first sample index past the old
length stops the run (it did, on the first GPU run).  ``--batch-size`` scales the lr the runner
uses.  ClusterFit's rows: the cluster step's images and the fit config it sets up."""
import os.path as osp

import pytest

from benchmarks import quality
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO


def _cfg(rel, tiny_tree, indices):
    cfg = load_config(osp.join(REPO, rel))
    cfg.train_dataloader.dataset.data_root = tiny_tree
    cfg.train_dataloader.dataset.indices = indices
    return cfg


def _tiny_len(tiny_tree):
    with open(osp.join(tiny_tree, 'meta', 'train.txt')) as f:
        return sum(1 for line in f if line.strip())


@pytest.mark.parametrize('rel,keys', [
    ('configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py', [('memory_bank', 'length')]),
    ('configs/deepcluster/deepcluster_r18-w32_1xb64-3000it_fmnist.py', [('num_samples', )]),
])
def test_full_train_resizes_per_image_state(tiny_tree, rel, keys):
    cfg = _cfg(rel, tiny_tree, 3)
    for path in keys:  # the config sizes them to its own `indices`; make them match ours
        node = cfg.model
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = 3
    quality.apply_data(cfg, full_train=True, workers=0)
    n = _tiny_len(tiny_tree)
    assert n > 3
    assert 'indices' not in cfg.train_dataloader.dataset
    for path in keys:
        node = cfg.model
        for k in path:
            node = node[k]
        assert node == n, path
    assert cfg.train_dataloader.num_workers == 0
    assert cfg.train_dataloader.persistent_workers is False


def test_full_train_leaves_other_sizes_and_subset_runs_alone(tiny_tree):
    cfg = _cfg('configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py', tiny_tree, 3)
    cfg.model.memory_bank.length = 3
    cfg.model.memory_bank.num_negatives = 3  # equal to the old size, but not a per-image size
    quality.apply_data(cfg, full_train=False, workers=2)  # the CPU preset: keeps the subset
    assert cfg.train_dataloader.dataset.indices == 3 and cfg.model.memory_bank.length == 3
    assert cfg.train_dataloader.persistent_workers is True
    quality.apply_data(cfg, full_train=True, workers=2)
    assert cfg.model.memory_bank.length == _tiny_len(tiny_tree)
    assert cfg.model.memory_bank.num_negatives == 3


class _Stop(Exception):
    pass


@pytest.mark.parametrize('name,keeps', [('exemplar-cnn', True), ('npid', False)])
def test_full_train_keeps_a_subset_that_is_part_of_the_method(monkeypatch, name, keeps):
    """Exemplar-CNN's seed images are its classes: the GPU preset must not drop them."""
    seen = []

    def record(cfg, full_train, workers):
        seen.append(full_train)
        raise _Stop

    monkeypatch.setattr(quality, 'apply_data', record)
    with pytest.raises(_Stop):
        quality.run_method(name, quality.METHODS[name], None, quality.PRESETS['gpu'])
    assert seen == [not keeps]


def test_full_train_rejects_index_lists(tiny_tree):
    cfg = _cfg('configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py', tiny_tree, [0, 1, 2])
    with pytest.raises(ValueError, match=r'indices=\[0, 1, 2\]'):
        quality.apply_data(cfg, full_train=True, workers=0)


@pytest.mark.parametrize('rel', ['configs/simclr/simclr_r18-w32_1xb64-3000it_fmnist.py',
                                 'configs/mocov2/mocov2_r18_1xb64-1300it_fmnist.py'])
def test_batch_size_scales_the_lr_the_runner_uses(tiny_tree, tmp_path, rel):
    from mmengine.runner import Runner
    cfg = _cfg(rel, tiny_tree, 3)
    config_batch = cfg.train_dataloader.batch_size
    config_lr = cfg.optim_wrapper.optimizer.lr
    quality.apply_batch_size(cfg, None)  # no override: the config as it is
    assert cfg.train_dataloader.batch_size == config_batch
    assert not cfg.get('auto_scale_lr', {}).get('enable', False)
    quality.apply_batch_size(cfg, 4 * config_batch)
    assert cfg.train_dataloader.batch_size == 4 * config_batch
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    runner = Runner.from_cfg(cfg)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
    lrs = [g['lr'] for g in runner.optim_wrapper.optimizer.param_groups]
    assert lrs == [pytest.approx(4 * config_lr)] * len(lrs), lrs
    with pytest.raises(ValueError, match='--batch-size must be positive, got 0'):
        quality.apply_batch_size(cfg, 0)


def _fit_cfg(tiny_tree):
    cfg = load_config(osp.join(REPO, quality.METHODS['clusterfit']))
    for split in ('train', 'val'):
        cfg.knn_eval[f'{split}_dataloader'].dataset.data_root = tiny_tree
        cfg.knn_eval[f'{split}_dataloader'].num_workers = 0
    return cfg


def test_clusterfit_row_clusters_the_subset_and_points_the_fit_config_at_it(
        tiny_tree, tmp_path, monkeypatch):
    """ClusterFit in the quality table: the cluster step reads the first ``subset`` training
    images of the run's own data, and the fit config then trains on exactly those, K classes."""
    from types import SimpleNamespace
    monkeypatch.setattr(quality, 'CLUSTERFIT_K', 4)
    cfg = _fit_cfg(tiny_tree)
    args = SimpleNamespace(work_dir=str(tmp_path))
    info = quality.clusterfit_clusters('clusterfit', cfg, args, dict(subset=10), rows={})
    assert info['n_pre'] == 'random init' and info['n_pre_checkpoint'] == 'random'
    # the `random init` row's network (zero_init_residual=False), not the fit config's own
    assert info['n_pre_config'] == quality.METHODS['pirl']
    assert info['k'] == 4 and info['clustered_images'] == 10
    ds = cfg.train_dataloader.dataset
    assert ds.ann_file == str(tmp_path / 'clusterfit' / 'clusters' / 'train_clusters.txt')
    assert osp.samefile(ds.data_root, tiny_tree)
    rows = [line.split() for line in open(ds.ann_file).read().splitlines()]
    with open(osp.join(tiny_tree, 'meta', 'train.txt')) as f:
        first = [line.split()[0] for line in f.read().splitlines()[:10]]
    assert [r[0] for r in rows] == first
    assert {int(r[1]) for r in rows} <= set(range(4))
    assert cfg.model.head.num_classes == 4 and cfg.model.data_preprocessor.num_classes == 4


def test_clusterfit_from_a_method_needs_it_trained_first(tiny_tree, tmp_path):
    from types import SimpleNamespace
    with pytest.raises(ValueError, match=r"clusterfit-pirl: N_pre is method 'pirl'.*list pirl "
                       r'before clusterfit-pirl'):
        quality.clusterfit_clusters('clusterfit-pirl', _fit_cfg(tiny_tree),
                                    SimpleNamespace(work_dir=str(tmp_path)), dict(subset=10),
                                    rows={})


def _default_result_name(harness: str, argv, machine: str) -> str:
    """The name ``benchmarks.<harness>`` gives the files of ``argv`` (no ``--tag``) on the device
    ``machine`` names."""
    import importlib
    module = importlib.import_module(f'benchmarks.{harness}')
    device = 'cuda' if 'NVIDIA' in machine else 'cpu'
    args = module.parse_args(argv)
    if harness in ('quality', 'peers', 'variants'):
        return module.result_name(args, device)
    return module.result_name(args)


def test_every_result_file_is_named_by_what_it_measures():
    """Each results file is named as its harness now names the files of its command (the .md's
    command line; the JSON keeps the command as it was run), with a .json and a .md of it."""
    import glob
    import json
    import shlex
    results = osp.join(REPO, 'benchmarks', 'results')
    mds = sorted(glob.glob(osp.join(results, '*_*.md')))
    assert len(mds) > 50
    for md in mds:
        base = osp.basename(md)[:-len('.md')]
        with open(md) as f:
            line = next(ln for ln in f if ln.startswith('Command: '))
        cmd = shlex.split(line[len('Command: '):].strip().strip('`'))
        assert cmd[:2] == ['python', '-m'] and cmd[2].startswith('benchmarks.'), line
        harness = cmd[2][len('benchmarks.'):]
        assert base.startswith(harness + '_'), (base, line)
        with open(osp.join(results, base + '.json')) as f:
            machine = json.load(f)['machine']
        assert '--tag' not in cmd, line
        assert f'{harness}_{_default_result_name(harness, cmd[3:], machine)}' == base, line
