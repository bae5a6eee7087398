"""Exact resume of the pretext-task family beyond rotation (tests/cli/test_exact_resume.py):
Jigsaw puzzles (tile jitter and permutation draws in the pipeline) and Colorization (the online
class prior ``head.bin_counts``, a buffer the loss weights depend on)."""
import os.path as osp

from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO


def _opts(tree):
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            *_COMMON]


def test_jigsaw_exact_resume(tiny_tree, tmp_path):
    cfg = osp.join(REPO, 'configs/jigsaw/jigsaw_r18-w32_1xb64-3000it_fmnist.py')
    _check_exact_resume(cfg, _opts(tiny_tree), tmp_path, buffers=['head.fc.weight'],
                        controls=('before_advance', ))


def test_colorization_exact_resume(tiny_tree, tmp_path):
    cfg = osp.join(REPO, 'configs/colorization/colorization_r18-w32_1xb64-3000it_fmnist.py')
    # the prior is used from the first pixel on, so a lost bin_counts would change the loss
    opts = _opts(tiny_tree) + ['model.head.min_prior_pixels=1']
    _check_exact_resume(cfg, opts, tmp_path, buffers=['head.bin_counts'],
                        controls=('before_advance', ))
