"""benchmarks.speed runs each method in a child process: the child must see the packages the
parent sees (a PYTHONPATH-carried stack on a GPU machine) plus the repo, and on the CPU no GPU."""
import os
import types

import pytest

from benchmarks import speed


@pytest.fixture
def captured(monkeypatch):
    seen = {}

    def fake_run(cmd, cwd, env, capture_output, text, timeout):
        seen.update(cmd=cmd, env=env)
        return types.SimpleNamespace(
            stdout='log line\n' + speed.RESULT_PREFIX + '{"images_per_second": 12.5}\n',
            stderr='', returncode=0)

    monkeypatch.setattr(speed.subprocess, 'run', fake_run)
    return seen


@pytest.mark.parametrize('outer', [None, os.pathsep.join(['/carried/site', '/other'])])
def test_child_sees_the_repo_and_the_callers_pythonpath(monkeypatch, captured, outer):
    if outer is None:
        monkeypatch.delenv('PYTHONPATH', raising=False)
    else:
        monkeypatch.setenv('PYTHONPATH', outer)
    args = speed.parse_args(['--methods', 'simclr', '--threads', '3'])
    row = speed.run_child('simclr', args)
    expected = [speed.REPO] + ([] if outer is None else outer.split(os.pathsep))
    assert captured['env']['PYTHONPATH'].split(os.pathsep) == expected
    assert captured['env']['OMP_NUM_THREADS'] == '3'
    assert captured['env']['CUDA_VISIBLE_DEVICES'] == '-1'
    assert captured['cmd'][captured['cmd'].index('--child') + 1] == 'simclr'
    assert row['images_per_second'] == 12.5


def test_a_child_without_a_result_line_reports_its_last_error(monkeypatch):
    def fake_run(*_a, **_k):
        return types.SimpleNamespace(stdout='', returncode=1,
                                     stderr='Traceback\nModuleNotFoundError: No module named x\n')

    monkeypatch.setattr(speed.subprocess, 'run', fake_run)
    row = speed.run_child('simclr', speed.parse_args(['--methods', 'simclr']))
    assert row['error'] == 'ModuleNotFoundError: No module named x'
    assert row['returncode'] == 1


def test_clusterfit_is_timed_once_on_its_fit_step_without_a_cluster_step(tiny_tree, tmp_path):
    """ClusterFit's rows differ only in their labels: speed.py times the fit config once, on the
    data set's own label list, so no cluster step has to run first."""
    from mmengine.registry import DefaultScope

    from mmssl_ext.registry import DATASETS
    assert 'clusterfit' in speed.METHODS
    assert not {'clusterfit-pirl', 'clusterfit-rotation'} & set(speed.METHODS)
    args = speed.parse_args(['--child', 'clusterfit'])
    cfg = speed.build_config('clusterfit', args, str(tmp_path))
    ds_cfg = dict(cfg.train_dataloader.dataset, data_root=tiny_tree)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(ds_cfg)
    with open(os.path.join(tiny_tree, 'meta', 'train.txt')) as f:
        assert len(ds) == sum(1 for line in f if line.strip())
    assert cfg.model.head.num_classes == 100  # the config's K-way head, as in the real fit
