"""tools/clusterfit.py noise-control: label-noise injection and the control experiment end to end
on a tiny 4-class tree (A = 2 classes, B = 2 held-out classes)."""
import glob
import json
import os
import os.path as osp

import numpy as np
import pytest

from mmssl_ext import clusterfit
from mmssl_ext.cli.clusterfit import main
from mmssl_ext.clusterfit.experiments import noise_control as clusterfit_control
from mmssl_ext.clusterfit.experiments.noise_control import inject_label_noise
from tests.helpers import REPO


# ------------------------------------------------------------------------------ noise injection
@pytest.mark.parametrize('rate', [0.0, 0.25, 0.5, 0.75, 1.0, 0.333])
def test_noise_rate_is_exact_and_flips_change_the_label(rate):
    rng = np.random.RandomState(0)
    clean = rng.randint(0, 5, size=1001)
    noisy, flipped = inject_label_noise(clean, rate, 5, seed=3)
    assert flipped.sum() == round(rate * 1001)
    assert ((noisy != clean) == flipped).all()  # every flip changes the label, nothing else
    assert noisy.min() >= 0 and noisy.max() < 5
    rep = clusterfit_control.noise_report(clean, noisy, 5, rate)
    assert rep['num_flipped'] == round(rate * 1001)
    assert rep['realised_rate'] == pytest.approx(round(rate * 1001) / 1001, abs=1e-6)
    assert np.asarray(rep['confusion_clean_to_noisy']).sum() == 1001


def test_noise_is_deterministic_nested_and_uniform_over_other_classes():
    clean = np.repeat(np.arange(4), 2500)
    a, fa = inject_label_noise(clean, 0.5, 4, seed=7)
    b, fb = inject_label_noise(clean, 0.5, 4, seed=7)
    assert (a == b).all() and (fa == fb).all()
    c, _ = inject_label_noise(clean, 0.5, 4, seed=8)
    assert (a != c).any()
    low, f_low = inject_label_noise(clean, 0.25, 4, seed=7)
    assert (f_low <= fa).all() and (low[f_low] == a[f_low]).all()  # nested levels
    # a flipped label is uniform over the 3 other classes
    for y in range(4):
        sel = fa & (clean == y)
        counts = np.bincount(a[sel], minlength=4)
        assert counts[y] == 0
        others = np.delete(counts, y) / sel.sum()
        assert np.abs(others - 1 / 3).max() < 0.05
    with pytest.raises(ValueError, match=r'label 5 \(sample 2\) is outside \[0, 4\)'):
        inject_label_noise([0, 1, 5], 0.5, 4)
    with pytest.raises(ValueError, match='noise rate must be in'):
        inject_label_noise([0, 1], 1.5, 4)


# ------------------------------------------------------------------------------ end to end
def _four_class_tree(root, n_train=6, n_val=3, size=32):
    """ImageNet-style tree with 4 classes of distinct stripe patterns (as tools/prepare_data)."""
    from PIL import Image
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:size, 0:size]
    patterns = [np.sin(xx / 2.0) > 0, np.sin(yy / 2.0) > 0, np.sin((xx + yy) / 3.0) > 0,
                np.sin((xx - yy) / 3.0) > 0]
    os.makedirs(osp.join(root, 'meta'))
    for split, n in (('train', n_train), ('val', n_val)):
        lines = []
        for c, pat in enumerate(patterns):
            os.makedirs(osp.join(root, split, f'c{c}'))
            for i in range(n):
                rel = f'c{c}/{c * n + i:05d}.png'
                img = pat * 170 + rng.randint(0, 80, size=(size, size))
                Image.fromarray(img.astype(np.uint8), mode='L').save(osp.join(root, split, rel))
                lines.append(f'{rel} {c}\n')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.write(''.join(f'pattern{c}\n' for c in range(4)))
    return root


def _argv(tree, work, *extra):
    return ['noise-control', '--work-dir', work, '--data-root', tree, '--noise', '50',
            '--classes-a', '0', '1', '--iters', '2', '--width', '8', '--batch-size', '4',
            '--k', '3', '--num-workers', '0', '--knn-k', '3', '--linear-probe',
            '--train-per-class', '0', '--eval-train-per-class', '0',
            '--config', osp.join(REPO, clusterfit_control.DEFAULT_CONFIG), *extra]


def test_noise_control_end_to_end_and_resumable(tmp_path, monkeypatch):
    tree = _four_class_tree(str(tmp_path / 'tree'))
    monkeypatch.chdir(tmp_path)
    work = 'work'  # relative, as on the command line; the lists are read relative to data_root
    res = main(_argv(tree, work))

    level = res['levels']['noise_50']
    assert level['realised_noise'] == 0.5 and level['num_flipped'] == 6  # 12 A images
    for m in ('pre', 'distill', 'cf'):
        assert 0 <= level[m]['k3_top1'] <= 100 and 0 <= level[m]['linear_top1'] <= 100
    assert res['split']['names_b'] == ['pattern2', 'pattern3']
    assert res['split']['num_memory_b'] == 12 and res['split']['num_query_b'] == 6
    assert 'k3_top1' in res['random_init']
    # the files the lead reads
    on_disk = json.load(open(osp.join(work, 'results.json')))
    assert on_disk['levels']['noise_50']['cf'] == level['cf']
    table = open(osp.join(work, 'results.md')).read()
    assert '| label noise p (realised) | N_pre | N_distill | N_cf |' in table
    assert '| 50 % (50.00 %) |' in table and 'linear probe top-1' in table
    assert osp.isfile(osp.join(work, 'results.png'))
    # the noisy labels: within A, half of them changed, the clean list untouched
    paths, clean = clusterfit_control.read_list(osp.join(work, 'data', 'train_A.txt'))
    npaths, noisy = clusterfit_control.read_list(
        osp.join(work, 'noise_50', 'labels', 'train_A_noisy.txt'))
    assert npaths == paths and set(noisy) <= {0, 1} and (noisy != clean).sum() == 6
    # every model in its own work dir; N_cf has K outputs, N_distill |A| and the KD loss
    for m, classes in (('pre', 2), ('cf', 3), ('distill', 2)):
        done = json.load(open(osp.join(work, 'noise_50', m, 'done.json')))
        assert done['num_classes'] == classes and osp.isfile(done['checkpoint'])
        assert osp.dirname(done['checkpoint']) == osp.abspath(osp.join(work, 'noise_50', m))
    dumped = open(osp.join(work, 'noise_50', 'distill',
                           osp.basename(clusterfit_control.DEFAULT_CONFIG))).read()
    assert 'DistillationKLLoss' in dumped and 'SoftLabelDataset' in dumped
    soft = np.load(osp.join(work, 'noise_50', 'soft', clusterfit.SOFT_TARGETS_FILE))
    assert soft.shape == (12, 2) and np.allclose(soft.sum(1), 1, atol=1e-5)

    # a re-run trains and evaluates nothing
    def no_training(*a, **k):
        raise AssertionError('a finished step was run again')
    monkeypatch.setattr(clusterfit_control, 'train_config', no_training)
    monkeypatch.setattr(clusterfit_control, 'extract_logits', no_training)
    monkeypatch.setattr('mmssl_ext.evaluation.extract_features', no_training)
    again = main(_argv(tree, work))
    assert again['levels'] == res['levels']
    # other training settings in the same work dir are refused
    with pytest.raises(ValueError, match=r'other training settings \(k: 3 there, 2 now\)'):
        main(_argv(tree, work, '--k', '2'))


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path, capsys):
    from mmssl_ext.utils.checkpoint import load_checkpoint_safe
    tree = _four_class_tree(str(tmp_path / 'tree'))
    nc = clusterfit_control.NoiseControl(
        str(tmp_path / 'work'), tree, noise=[0], classes_a=[0, 1], train_per_class=None,
        eval_train_per_class=None, width=8, batch_size=4, iters=4, num_workers=0,
        ckpt_interval=2, knn_k=[3], config=osp.join(REPO, clusterfit_control.DEFAULT_CONFIG))
    nc.prepare_data()
    ann = nc.noisy_labels(0)['ann_file']
    # an "interrupted" run: 2 of the iterations done, checkpoint written, no done.json
    first = nc.train(0, 'pre', ann, 2, iters=2)
    os.remove(osp.join(nc.path('noise_00', 'pre'), 'done.json'))
    capsys.readouterr()
    done = nc.train(0, 'pre', ann, 2, iters=4)
    assert 'resuming' in capsys.readouterr().out
    assert done['checkpoint'].endswith('iter_4.pth') and first['checkpoint'].endswith('iter_2.pth')
    assert load_checkpoint_safe(done['checkpoint'])['meta']['iter'] == 4
    log_files = sorted(glob.glob(osp.join(nc.path('noise_00', 'pre'), '*', '*.log')))
    assert any('resumed' in open(f).read().lower() for f in log_files)
