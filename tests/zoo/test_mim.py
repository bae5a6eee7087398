"""``mim search mmssl_ext`` and ``mim train mmssl_ext CONFIG`` on an installed mmssl_ext.

mim reads a package's model-index.yml, configs and tools from ``<dist location>/mmssl_ext/.mim``;
setup.py fills that folder (copies for a wheel). The package is installed here the way a user's
``pip install`` does (a wheel built from this checkout, into a folder of its own), and openmim
comes from ``.venv/mim-test`` (tests/requirements-mim.txt), never from the environment itself.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from tests.helpers import REPO

MIM_DIR = osp.join(sys.prefix, 'mim-test')
CONFIG = 'pirl_r18-w32_1xb64-3000it_fmnist'  # mim finds CONFIG.py in the installed .mim/configs


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(PYTHONPATH, site folder) with mmssl_ext installed from a wheel of this checkout."""
    assert osp.isdir(osp.join(MIM_DIR, 'mim')), \
        f'openmim is missing from {MIM_DIR}: run `bash scripts/setup.sh`'
    site = str(tmp_path_factory.mktemp('site'))
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--disable-pip-version-check',
                    '--no-deps', '--no-build-isolation', '--target', site, REPO],
                   check=True, capture_output=True, cwd=REPO)
    # the build copies into the checkout's .mim and links it back (setup.py): still links
    assert osp.islink(osp.join(REPO, 'mmssl_ext', '.mim', 'configs'))
    return f'{site}{os.pathsep}{MIM_DIR}', site


def _mim(args, installed, cwd):
    env = dict(os.environ, PYTHONPATH=installed[0])
    return subprocess.run([sys.executable, '-m', 'mim'] + args, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_installed_package_carries_the_mim_folder(installed):
    mim = osp.join(installed[1], 'mmssl_ext', '.mim')
    assert osp.isfile(osp.join(mim, 'model-index.yml'))
    assert osp.isfile(osp.join(mim, 'tools', 'train.py'))
    assert osp.isfile(osp.join(mim, 'configs', 'pirl', f'{CONFIG}.py'))
    assert not osp.islink(osp.join(mim, 'configs'))  # copies, not links into this checkout


@pytest.mark.slow
def test_mim_search_lists_our_models(installed, tmp_path):
    out = _mim(['search', 'mmssl_ext', '--model', 'pirl'], installed, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'config id: pirl_resnet50_8xb32' in out.stdout
    assert 'configs/pirl/pirl_r50_8xb32.py' in out.stdout


@pytest.mark.slow
def test_mim_train_runs_two_iterations(installed, tiny_tree, tmp_path):
    work = tmp_path / 'work'
    opts = ['train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'train_dataloader.dataset.indices=12',
            f'train_dataloader.dataset.data_root={tiny_tree}',
            'model.memory_bank.length=24', 'model.memory_bank.num_negatives=16',
            'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2']
    out = _mim(['train', 'mmssl_ext', f'{CONFIG}.py', '--gpus', '0', '--work-dir', str(work),
                '--cfg-options'] + opts, installed, tmp_path)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    # mim ran the installed tools/train.py on the installed config
    train_py = osp.join(installed[1], 'mmssl_ext', '.mim', 'tools', 'train.py')
    assert train_py in out.stdout
    ckpt = load_checkpoint_safe(str(work / 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2
    assert 'rng_state' in ckpt  # the config's runtime (SSLRunner, RNGStateHook) ran
    assert ckpt['state_dict']['memory_bank.feats'].shape[0] == 24
