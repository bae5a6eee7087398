"""End to end on a user's own folder: Fashion-MNIST images (synthetic ones without the data)
flattened into nested sub-folders in every mode a user's folder holds (gray, RGB / CMYK JPEG,
RGBA, 16-bit, palette, gray+alpha, 1 x 2000, 2000 x 1), a corrupt file, a text file and a hidden
file; the file-list tool, PIRL and MoCo v2 with no data size set anywhere, ClusterFit cluster +
fit, and kNN on a labelled folder."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import REPO, write_tiny_imagenet_tree

PIRL_FOLDER = f'{REPO}/configs/pirl/pirl_r18-w32_1xb64-3000it_folder.py'
MOCO_FOLDER = f'{REPO}/configs/mocov2/mocov2_r18_1xb64-1300it_folder.py'
FIT_FOLDER = f'{REPO}/configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_folder.py'
NUM_IMAGES = 36
MODES = ('gray', 'rgb_jpeg', 'rgba', 'gray16', 'cmyk_jpeg', 'palette', 'gray_alpha', 'wide',
         'tall')
TINY = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'default_hooks.logger.interval=1']


def _fmnist(n: int) -> np.ndarray:
    """``n`` Fashion-MNIST test images (28 x 28 uint8), or seeded noise without the data."""
    from mmssl_ext.datasets.fashion_mnist import DEBIAN_FMNIST_DIR, read_idx
    for path in (f'{REPO}/data/fashion_mnist/raw/t10k-images-idx3-ubyte',
                 f'{DEBIAN_FMNIST_DIR}/t10k-images-idx3-ubyte.gz'):
        if osp.isfile(path):
            return np.ascontiguousarray(read_idx(path)[:n])
    return np.random.RandomState(0).randint(0, 256, (n, 28, 28)).astype(np.uint8)


def _write(path: str, a: np.ndarray, mode: str) -> np.ndarray:
    """Save the 28 x 28 gray ``a`` in ``mode``; return the H x W x 3 uint8 BGR image expected
    from the training loader (independent of it: numpy on the array written)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    gray3 = np.repeat(a[..., None], 3, axis=2)
    if mode == 'gray':
        Image.fromarray(a, 'L').save(path)
    elif mode == 'rgb_jpeg':
        rgb = np.stack([a, 255 - a, a // 2], axis=2)
        Image.fromarray(rgb, 'RGB').save(path, quality=100, subsampling=0)
        return rgb[..., ::-1]
    elif mode == 'rgba':
        Image.fromarray(np.dstack([gray3, np.full_like(a, 7)]), 'RGBA').save(path)
    elif mode == 'gray16':  # a * 257: the 16-bit image of the same picture
        Image.fromarray(a.astype(np.uint16) * 257).save(path)
    elif mode == 'cmyk_jpeg':
        Image.fromarray(a, 'L').convert('CMYK').save(path, quality=100, subsampling=0)
    elif mode == 'palette':
        Image.fromarray(a, 'L').convert('P').save(path)
        return np.asarray(Image.open(path).convert('RGB'))[..., ::-1]
    elif mode == 'gray_alpha':
        Image.fromarray(np.dstack([a, np.full_like(a, 200)]), 'LA').save(path)
    elif mode == 'wide':  # 1 x 2000
        row = np.resize(a.reshape(-1), 2000).reshape(1, 2000)
        Image.fromarray(row, 'L').save(path)
        return np.repeat(row[..., None], 3, axis=2)
    elif mode == 'tall':  # 2000 x 1
        col = np.resize(a.reshape(-1), 2000).reshape(2000, 1)
        Image.fromarray(col, 'L').save(path)
        return np.repeat(col[..., None], 3, axis=2)
    return gray3


@pytest.fixture(scope='module')
def own(tmp_path_factory):
    """``(root, {relative path: expected image})`` of the readable images; plus a corrupt PNG,
    a text file and a hidden file."""
    root = str(tmp_path_factory.mktemp('own_images'))
    expected = {}
    for i, a in enumerate(_fmnist(NUM_IMAGES)):
        mode = MODES[i % len(MODES)]
        ext = '.jpg' if mode.endswith('jpeg') else '.png'
        nest = ['', 'a', 'a/b', 'c/d/e'][i % 4]
        rel = f'{nest}/{mode}_{i:02d}{ext}'.lstrip('/')
        expected[rel] = _write(osp.join(root, rel), a, mode)
    os.makedirs(osp.join(root, 'c'), exist_ok=True)
    with open(osp.join(root, 'c/broken.png'), 'wb') as f:
        with open(osp.join(root, sorted(expected)[0]), 'rb') as g:
            f.write(g.read()[:60])  # a truncated PNG
    with open(osp.join(root, 'notes.txt'), 'w') as f:
        f.write('not an image\n')
    with open(osp.join(root, 'a', '.hidden.png'), 'wb') as f:
        f.write(b'\x00')
    return root, expected


@pytest.fixture(scope='module')
def file_list(own):
    from mmssl_ext.cli.make_file_list import main
    root, _ = own
    return main([root]), osp.join(root, 'file_list.txt')


@pytest.fixture(scope='module')
def labelled(tmp_path_factory):
    """A labelled folder: train/<class>/*.png and val/<class>/*.png, 3 classes."""
    return write_tiny_imagenet_tree(str(tmp_path_factory.mktemp('labelled')), n_train=6,
                                    n_val=3)


@pytest.fixture(scope='module')
def pirl_run(own, file_list, tmp_path_factory):
    """2 PIRL iterations on the list the tool wrote; no data size set."""
    from mmssl_ext.cli import train
    root, _ = own
    work = str(tmp_path_factory.mktemp('pirl_folder'))
    train.main([PIRL_FOLDER, '--work-dir', work, '--cfg-options',
                f'train_dataloader.dataset.data_root={root}',
                'train_dataloader.dataset.ann_file=file_list.txt', 'train_dataloader.batch_size=4',
                'model.memory_bank.num_negatives=8', 'train_cfg.max_iters=2',
                'default_hooks.checkpoint.interval=2', *TINY])
    return work, osp.join(work, 'iter_2.pth')


def test_file_list_tool_lists_the_readable_images(own, file_list, capsys):
    root, expected = own
    res, path = file_list
    assert res.images == sorted(expected)
    assert list(res.corrupt) == ['c/broken.png'] and 'cannot decode' in res.corrupt['c/broken.png']
    assert res.others == ['notes.txt']  # the hidden file is ignored, as mmengine's listing does
    with open(path) as f:
        assert f.read() == ''.join(f'{p}\n' for p in sorted(expected))
    summary = res.summary()
    assert f'{NUM_IMAGES} readable images, 1 corrupt, 1 skipped' in summary
    assert 'c/broken.png' in summary


def test_config_reads_the_list_in_scan_order(own, file_list):
    """The folder config reads the list; a scan of the same folder gives the same order (plus
    the corrupt file, which only the list leaves out)."""
    from mmssl_ext.datasets.checks import build_dataset_from_config
    root, expected = own
    opts = {'train_dataloader.dataset.data_root': root}
    listed = build_dataset_from_config(
        PIRL_FOLDER, 'train', dict(opts, **{'train_dataloader.dataset.ann_file': 'file_list.txt'}))
    scanned = build_dataset_from_config(PIRL_FOLDER, 'train', opts)
    paths = [osp.relpath(listed.get_data_info(i)['img_path'], root) for i in range(len(listed))]
    assert paths == sorted(expected)
    scan_paths = [osp.relpath(scanned.get_data_info(i)['img_path'], root)
                  for i in range(len(scanned))]
    assert [p for p in scan_paths if p != 'c/broken.png'] == paths
    assert len(scan_paths) == NUM_IMAGES + 1


def test_every_mode_loads_as_bgr_uint8(own):
    from mmssl_ext.datasets.transforms.loading import LoadImageFromFileChecked
    root, expected = own
    loader = LoadImageFromFileChecked()
    for rel, ref in expected.items():
        img, reason, _ = loader.load(osp.join(root, rel))
        assert reason is None, (rel, reason)
        assert img.dtype == np.uint8 and img.shape == ref.shape, rel
        err = np.abs(img.astype(int) - ref.astype(int)).mean()
        assert err < (3 if rel.endswith('.jpg') else 1e-9), (rel, err)


def test_pirl_bank_is_sized_by_the_readable_images(pirl_run):
    from mmssl_ext.utils.checkpoint import load_checkpoint_safe
    _, ckpt = pirl_run
    state = load_checkpoint_safe(ckpt)['state_dict']
    bank = state['memory_bank.feats']
    assert bank.shape == (NUM_IMAGES, 128)
    # the visited rows were written (unit norm), so the bank is indexed by the list's samples
    assert torch.isfinite(bank).all()


def test_mocov2_on_the_scanned_folder_skips_the_corrupt_file(own, tmp_path):
    """MoCo v2 on a scan (no list): 5 x 8 samples cover the 37 files, the corrupt one is
    skipped and counted."""
    from mmssl_ext.cli import train
    from mmssl_ext.datasets.transforms.loading import LoadImageFromFileChecked
    root, _ = own
    LoadImageFromFileChecked.reset_skipped()
    train.main([MOCO_FOLDER, '--work-dir', str(tmp_path), '--cfg-options',
                f'train_dataloader.dataset.data_root={root}', 'train_dataloader.batch_size=8',
                'train_dataloader.dataset.pipeline.0.skip_corrupt=True', 'model.queue_len=16',
                'model.backbone.base_channels=8', 'model.backbone.stem_channels=8',
                'model.neck.in_channels=64', 'model.neck.hid_channels=64',
                'train_cfg.max_iters=5', 'default_hooks.checkpoint.interval=5', *TINY])
    assert list(LoadImageFromFileChecked.skipped) == [osp.join(root, 'c/broken.png')]
    assert osp.isfile(osp.join(str(tmp_path), 'iter_5.pth'))


def test_clusterfit_cluster_and_fit_on_the_folder(own, pirl_run, tmp_path):
    """cluster: N_pre's folder config names the images (a scan: the corrupt file is named and
    left out); fit: 2 iterations on the pseudo labels."""
    from mmssl_ext.cli import clusterfit
    from mmssl_ext.utils.checkpoint import load_checkpoint_safe
    root, expected = own
    _, ckpt = pirl_run
    out = str(tmp_path / 'clusters')
    summary = clusterfit.main(['cluster', '--config', PIRL_FOLDER, '--checkpoint', ckpt,
                               '--cfg-options', f'train_dataloader.dataset.data_root={root}',
                               '--k', '3', '--num-workers', '0', '--out-dir', out])
    assert summary['num_samples'] == NUM_IMAGES
    assert list(summary['data']['unreadable']) == ['c/broken.png']
    with open(osp.join(out, 'train_clusters.txt')) as f:
        rows = [line.split() for line in f]
    assert [r[0] for r in rows] == sorted(expected)
    assert sorted({int(r[1]) for r in rows}) == [0, 1, 2]
    work = str(tmp_path / 'fit')
    clusterfit.main(['fit', FIT_FOLDER, '--clusters', out, '--work-dir', work, '--cfg-options',
                     'train_dataloader.batch_size=4', 'train_cfg.max_iters=2',
                     'default_hooks.checkpoint.interval=2', *TINY])
    state = load_checkpoint_safe(osp.join(work, 'iter_2.pth'))['state_dict']
    assert state['head.fc.weight'].shape[0] == 3


def test_knn_on_a_labelled_folder(pirl_run, labelled):
    """Evaluation is off on the folder config until labelled folders are given; the flags and
    the knn_eval.data_root short form give the same data."""
    from mmssl_ext.cli import knn_eval
    _, ckpt = pirl_run
    with pytest.raises(ValueError, match='--train-folder DIR/train --val-folder DIR/val'):
        knn_eval.run(PIRL_FOLDER, ckpt, progress=False)
    from mmssl_ext.utils.config import load_config
    small = {'knn_eval.num_workers': 0, 'knn_eval.batch_size': 8}
    train, val = osp.join(labelled, 'train'), osp.join(labelled, 'val')
    by_flags = knn_eval.run(PIRL_FOLDER, ckpt, cfg_options=small, ks=(3, ), progress=False,
                            train_folder=train, val_folder=val)
    cfg = load_config(PIRL_FOLDER)
    cfg.merge_from_dict(dict(small, **{'knn_eval.data_root': labelled}))
    by_root = knn_eval._knn_cfg(cfg, PIRL_FOLDER)
    assert by_root.train_dataloader.dataset.data_root == train
    assert by_root.val_dataloader.dataset.data_root == val
    assert by_root.to_dict() == knn_eval._knn_cfg(cfg, PIRL_FOLDER, train, val).to_dict()
    assert 0 <= by_flags['checkpoint']['k3_top1'] <= 100


def test_layer_probe_on_a_labelled_folder(pirl_run, labelled, tmp_path):
    from mmssl_ext.cli import layer_probe
    _, ckpt = pirl_run
    report = layer_probe.main([
        PIRL_FOLDER, ckpt, '--work-dir', str(tmp_path), '--method', 'knn', '--stages', 'res5',
        '--k', '3', '--num-train', '0', '--train-folder', osp.join(labelled, 'train'),
        '--val-folder', osp.join(labelled, 'val'), '--cfg-options', 'knn_eval.num_workers=0',
        'knn_eval.batch_size=8'])
    assert (report['num_train'], report['num_test']) == (18, 9)  # 3 classes x 6 / x 3
    assert set(report['results'][next(iter(report['results']))]['knn']) == {'res5'}
