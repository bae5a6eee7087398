"""ClusterFit's option objects: a bad spec is refused before anything is loaded or written, and
the error names the command-line flag."""
import inspect
import os.path as osp

import pytest

from mmssl_ext import clusterfit as cf
from mmssl_ext.cli.clusterfit import main
from mmssl_ext.engine.runner import merge_train_options
from tests.helpers import MOCO_FMNIST_CFG, REPO

FIT_CFG = osp.join(REPO, 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py')


@pytest.mark.parametrize('spec, message', [
    (dict(config='c.py', checkpoint='x.pth', torchvision='resnet18', weights='w.pth'),
     '--torchvision and --config are exclusive'),
    (dict(config='c.py', checkpoint='x.pth', weights='w.pth'), '--weights needs --torchvision'),
    (dict(torchvision='resnet18', weights='w.pth', checkpoint='x.pth'),
     '--checkpoint needs --config'),
    (dict(), 'no pretrained network: give N_pre either as --config C --checkpoint X or as '
     '--torchvision NAME --weights FILE'),
    (dict(torchvision='resnet18'), '--torchvision resnet18 needs --weights.*never downloads'),
    (dict(config='c.py'), '--config c.py needs --checkpoint'),
    (dict(config='c.py', checkpoint='x.pth', layer=-2), '--layer must be -1 .* got -2'),
    (dict(torchvision='resnet18', weights='random', pool='min'), "--pool must be 'avg' or 'max'"),
])
def test_npre_spec_names_the_flag(spec, message):
    with pytest.raises(ValueError, match=message):
        cf.NPreSpec(**spec).validate()


def test_npre_spec_speaks_the_commands_spelling():
    spec = cf.NPreSpec(config='c.py', checkpoint='x.pth', torchvision='resnet18',
                       weights='random', config_flag='--pretrained-config')
    with pytest.raises(ValueError, match='--torchvision and --pretrained-config are exclusive'):
        spec.validate()
    with pytest.raises(ValueError, match='--pretrained-config c.py needs --checkpoint'):
        cf.NPreSpec(config='c.py', config_flag='--pretrained-config').validate()
    # soft targets from a cluster step's saved features need no N_pre
    assert cf.NPreSpec().validate(required=False).given is False
    assert cf.NPreSpec(config='c.py', checkpoint='random').validate().name == 'c.py'


@pytest.mark.parametrize('source, message', [
    (dict(data_root='d', data_config='c.py'), '--data-root and --data-config are exclusive'),
    (dict(ann_file='meta/train.txt'), '--ann-file needs --data-root'),
    (dict(data_prefix='train'), '--data-prefix needs --data-root'),
    (dict(crop_ratio=0.875), '--crop-ratio needs --data-root'),
    (dict(data_cfg_options={'a': 1}), '--data-cfg-options needs --data-config'),
    (dict(data_root='d', crop_ratio=1.5), r'--crop-ratio must be in \(0, 1\]'),
    (dict(data_root='d', num_workers=-1), '--num-workers must be an integer >= 0'),
    (dict(data_root='d', batch_size=0), '--batch-size must be an integer >= 1'),
    (dict(data_root='d', num_samples=0), '--num-samples must be an integer >= 1'),
])
def test_image_source_names_the_flag(source, message):
    with pytest.raises(ValueError, match=message):
        cf.ImageSource(**source).validate()


def test_image_source_defaults_to_the_configs_knn_images():
    opts = {'knn_eval.train_dataloader.num_workers': 0}
    src = cf.ImageSource().or_config('c.py', opts)
    assert (src.data_config, src.data_cfg_options) == ('c.py', opts)
    given = cf.ImageSource(data_root='d')
    assert given.or_config('c.py', opts) is given


@pytest.mark.parametrize('options, message', [
    (dict(k=0), r'--k \(number of clusters\) must be an integer >= 1, got 0'),
    (dict(k=2, niter=0), '--niter must be an integer >= 1'),
    (dict(k=2, pca_dim=0), '--pca-dim must be an integer >= 1'),
    (dict(k=2, whiten=True), '--whiten needs --pca-dim'),
])
def test_kmeans_options_name_the_flag(options, message):
    with pytest.raises(ValueError, match=message):
        cf.KMeansOptions(**options).validate()


@pytest.mark.parametrize('options, message', [
    (dict(mode='centroids'), '--mode centroids needs --clusters DIR'),
    (dict(mode='logits', clusters='c'), '--clusters is for --mode centroids'),
    (dict(mode='soft'), "--mode must be 'auto', 'logits' or 'centroids'"),
    (dict(temperature=0.0), '--temperature must be positive'),
    (dict(dtype='float64'), "--dtype must be 'float32' or 'float16'"),
])
def test_soft_target_options_name_the_flag(options, message):
    with pytest.raises(ValueError, match=message):
        cf.SoftTargetOptions(**options).validate()


def test_soft_target_defaults():
    assert cf.SoftTargetOptions().resolved() == ('logits', 4.0)
    assert cf.SoftTargetOptions(clusters='c').resolved() == ('centroids', 0.1)
    assert cf.SoftTargetOptions(clusters='c', temperature=0.5).resolved() == ('centroids', 0.5)


def test_train_options_are_the_runner_merges_keywords():
    params = set(inspect.signature(merge_train_options).parameters)
    assert set(cf.TrainOptions().runner_kwargs()) == params - {'cfg', 'config', 'cfg_options'}


def test_from_kwargs_takes_only_its_fields():
    kw = dict(config='c.py', checkpoint='x.pth', data_root='d', k=3, progress=False)
    npre = cf.NPreSpec.from_kwargs(kw)
    images = cf.ImageSource.from_kwargs(kw)
    kmeans = cf.KMeansOptions.from_kwargs(kw)
    assert (npre.config, npre.checkpoint, images.data_root, kmeans.k) == ('c.py', 'x.pth', 'd', 3)
    assert kw == dict(progress=False)


def test_cli_refuses_a_bad_spec_before_writing(tmp_path):
    work = tmp_path / 'run'
    with pytest.raises(ValueError, match='--torchvision and --pretrained-config are exclusive'):
        main(['run', FIT_CFG, '--pretrained-config', MOCO_FMNIST_CFG, '--checkpoint', 'random',
              '--torchvision', 'resnet18', '--weights', 'random', '--k', '2', '--work-dir',
              str(work)])
    with pytest.raises(ValueError, match='--weights needs --torchvision'):
        main(['cluster', '--config', MOCO_FMNIST_CFG, '--checkpoint', 'random', '--weights',
              'w.pth', '--k', '2', '--out-dir', str(work)])
    with pytest.raises(ValueError, match='--ann-file needs --data-root'):
        main(['cluster', '--config', MOCO_FMNIST_CFG, '--checkpoint', 'random', '--ann-file',
              'meta/train.txt', '--k', '2', '--out-dir', str(work)])
    with pytest.raises(ValueError, match='--mode centroids needs --clusters'):
        main(['soft-targets', '--mode', 'centroids', '--out-dir', str(work)])
    assert not work.exists()


def test_noise_control_default_recipe_is_relative_to_the_cwd(tmp_path, monkeypatch):
    from mmssl_ext.clusterfit.experiments import noise_control
    assert not osp.isabs(noise_control.DEFAULT_CONFIG)
    assert osp.isfile(osp.join(REPO, noise_control.DEFAULT_CONFIG))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r'--config configs/clusterfit/clusterfit-noise-'
                       r'control_.*: no such file; .*run from the repository root'):
        main(['noise-control', '--work-dir', str(tmp_path / 'w')])
    assert not (tmp_path / 'w').exists()
