"""Data preparation: both output forms, checked against the IDX source, on synthetic and real
data."""
import gzip
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmssl_ext.datasets import fashion_mnist as fm

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _write_idx(path, arr, gz=True):
    header = bytes([0, 0, 0x08, arr.ndim]) + b''.join(
        int(d).to_bytes(4, 'big') for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    with (gzip.open(path, 'wb') if gz else open(path, 'wb')) as f:
        f.write(data)


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A miniature Fashion-MNIST source (the expected counts are patched to match)."""
    rng = np.random.RandomState(0)
    src = tmp_path / 'src'
    src.mkdir()
    sizes = {'train': 30, 'val': 12}
    arrays = {}
    for split, (img_stem, lbl_stem, _) in fm.SPLITS.items():
        imgs = rng.randint(0, 256, size=(sizes[split], 28, 28))
        labels = np.arange(sizes[split]) % 10
        rng.shuffle(labels)
        _write_idx(src / (img_stem + '.gz'), imgs)
        _write_idx(src / (lbl_stem + '.gz'), labels)
        arrays[split] = (imgs, labels)
    monkeypatch.setattr(fm, 'SPLITS', {
        s: (i, lbl, sizes[s]) for s, (i, lbl, _) in fm.SPLITS.items()})
    return str(src), arrays


def test_prepare_writes_both_forms(fake_source, tmp_path):
    src, arrays = fake_source
    out = str(tmp_path / 'out')
    info = fm.prepare_fashion_mnist(src, out, progress=False)
    assert info == dict(counts={'train': 30, 'val': 12}, num_classes=10, skipped=False)
    for split, (imgs, labels) in arrays.items():
        lines = open(osp.join(out, 'meta', f'{split}.txt')).read().splitlines()
        assert len(lines) == len(imgs)
        for i, line in enumerate(lines):
            rel, label = line.split()
            assert int(label) == labels[i]
            assert rel.split('/')[0] == fm.FMNIST_FOLDERS[labels[i]]
            png = np.array(Image.open(osp.join(out, split, rel)))
            np.testing.assert_array_equal(png, imgs[i])  # lossless, same pixels
        # raw/ holds uncompressed IDX readable by mmpretrain's reader
        from mmpretrain.datasets.mnist import read_image_file, read_label_file
        img_stem, lbl_stem, _ = fm.SPLITS[split]
        np.testing.assert_array_equal(
            read_image_file(osp.join(out, 'raw', img_stem)).numpy(), imgs)
        np.testing.assert_array_equal(
            read_label_file(osp.join(out, 'raw', lbl_stem)).numpy(), labels)
    assert open(osp.join(out, 'meta', 'classes.txt')).read().split() == list(fm.FMNIST_FOLDERS)


def test_prepare_is_idempotent_and_detects_source_change(fake_source, tmp_path):
    src, _ = fake_source
    out = str(tmp_path / 'out')
    fm.prepare_fashion_mnist(src, out, progress=False)
    stamp_mtime = os.path.getmtime(osp.join(out, fm.STAMP))
    assert fm.prepare_fashion_mnist(src, out, progress=False)['skipped'] is True
    assert os.path.getmtime(osp.join(out, fm.STAMP)) == stamp_mtime
    # a different source invalidates the stamp
    labels = np.zeros(12, dtype=np.uint8)
    _write_idx(osp.join(src, 't10k-labels-idx1-ubyte.gz'), labels)
    assert fm.prepare_fashion_mnist(src, out, progress=False)['skipped'] is False
    assert set(open(osp.join(out, 'meta', 'val.txt')).read().split()[1::2]) == {'0'}


def test_bad_sources_are_named(fake_source, tmp_path):
    src, _ = fake_source
    with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'):
        fm.prepare_fashion_mnist(str(tmp_path / 'nowhere'), str(tmp_path / 'o'))
    # truncated image file: error names it, nothing written under the output
    path = osp.join(src, 'train-images-idx3-ubyte.gz')
    data = gzip.open(path).read()
    with gzip.open(path, 'wb') as f:
        f.write(data[:-100])
    out = tmp_path / 'o2'
    with pytest.raises(ValueError, match='train-images-idx3-ubyte.gz.*truncated'):
        fm.prepare_fashion_mnist(src, str(out), progress=False)
    assert not (out / fm.STAMP).exists()
    with gzip.open(path, 'wb') as f:
        f.write(b'\x12\x34\x56\x78')
    with pytest.raises(ValueError, match='train-images-idx3-ubyte.gz is not an .*magic'):
        fm.read_idx(path)


REAL_SRC = fm.DEBIAN_FMNIST_DIR
REAL_OUT = osp.join(REPO, 'data', 'fashion_mnist')


@pytest.mark.skipif(not osp.isdir(REAL_SRC),
                    reason='Debian package dataset-fashion-mnist not installed')
def test_real_fashion_mnist_counts():
    """The set-up's data (data/fashion_mnist): 60000 / 10000 images, 10 classes, both forms."""
    info = fm.prepare_fashion_mnist(REAL_SRC, REAL_OUT, progress=False)  # no-op when prepared
    assert info['counts'] == {'train': 60000, 'val': 10000}
    assert info['num_classes'] == 10
    from mmpretrain.datasets import FashionMNIST, ImageNet
    raw_train = FashionMNIST(data_root=osp.join(REAL_OUT, 'raw'), test_mode=False,
                             download=False)
    raw_test = FashionMNIST(data_root=osp.join(REAL_OUT, 'raw'), test_mode=True, download=False)
    assert (len(raw_train), len(raw_test)) == (60000, 10000)
    png_train = ImageNet(data_root=REAL_OUT, split='train')
    png_val = ImageNet(data_root=REAL_OUT, split='val')
    assert (len(png_train), len(png_val)) == (60000, 10000)
    labels = png_train.get_gt_labels()
    assert np.bincount(labels).tolist() == [6000] * 10
    # the two forms agree image by image
    for i in (0, 12345, 59999):
        info_i = png_train.get_data_info(i)
        png = np.array(Image.open(info_i['img_path']))
        np.testing.assert_array_equal(png, raw_train.get_data_info(i)['img'])
        assert int(info_i['gt_label']) == int(raw_train.get_data_info(i)['gt_label'])
