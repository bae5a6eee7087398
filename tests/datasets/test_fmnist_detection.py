"""The Fashion-MNIST detection set: boxes / masks / labels re-derived from the written files, the
train/val source separation, determinism, the stamp, loading in mmdet, and the error messages.

The source is a fake Fashion-MNIST written by the test: each image is one constant-intensity
rectangle on black whose intensity encodes the split and the label (train: 130 + 12 * label,
test: 20 + 10 * label), so the pixels of every pasted item tell where it came from.
"""
import gzip
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmssl_ext.datasets import fashion_mnist as fm
from mmssl_ext.datasets import fmnist_detection as fd

N_SRC = {'train': 40, 'val': 24}
EMPTY = {'train': (3, 17), 'val': (5,)}     # all-black images: never annotated
TINY = {'train': (8,), 'val': (9,)}         # 4 bright pixels: below MIN_ITEM_PIXELS, dropped
SMALL = dict(num_train=12, num_val=6, canvas_size=64, min_items=2, max_items=5,
             scale_range=(0.9, 1.8), max_iou=0.25, seed=0)


def intensity(split, label):
    return 130 + 12 * int(label) if split == 'train' else 20 + 10 * int(label)


def _write_idx(path, arr, gz=True):
    header = bytes([0, 0, 0x08, arr.ndim]) + b''.join(
        int(d).to_bytes(4, 'big') for d in arr.shape)
    with (gzip.open(path, 'wb') if gz else open(path, 'wb')) as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def write_fake_source(src, seed=0):
    """Fake IDX files (train gzipped, test not); returns {split: (images, labels)}."""
    rng = np.random.RandomState(seed)
    os.makedirs(src, exist_ok=True)
    arrays = {}
    for split, (img_stem, lbl_stem, _) in fm.SPLITS.items():
        n = N_SRC[split]
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        imgs = np.zeros((n, 28, 28), dtype=np.uint8)
        for i in range(n):
            if i in EMPTY[split]:
                continue
            if i in TINY[split]:
                imgs[i, 13:15, 13:15] = 255
                continue
            h, w = rng.randint(8, 25, size=2)
            y, x = rng.randint(0, 28 - h + 1), rng.randint(0, 28 - w + 1)
            imgs[i, y:y + h, x:x + w] = intensity(split, labels[i])
        gz = split == 'train'
        _write_idx(osp.join(src, img_stem + ('.gz' if gz else '')), imgs, gz)
        _write_idx(osp.join(src, lbl_stem + ('.gz' if gz else '')), labels, gz)
        arrays[split] = (imgs, labels)
    return arrays


@pytest.fixture(scope='module')
def fake_src(tmp_path_factory):
    src = str(tmp_path_factory.mktemp('fake_fmnist'))
    return src, write_fake_source(src)


@pytest.fixture(scope='module')
def det_set(fake_src, tmp_path_factory):
    src, arrays = fake_src
    out = str(tmp_path_factory.mktemp('det') / 'fmnist_det')
    summary = fd.prepare_fmnist_detection(src, out, **SMALL)
    return out, summary, arrays


def _load(out, split):
    with open(osp.join(out, 'annotations', f'{split}.json')) as f:
        return json.load(f)


def _tree_bytes(root):
    files = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = osp.join(d, n)
            with open(p, 'rb') as f:
                files[osp.relpath(p, root)] = f.read()
    return files


def test_layout_summary_and_categories(det_set):
    out, summary, _ = det_set
    assert summary['skipped'] is False
    assert sorted(os.listdir(out)) == ['annotations', 'prepared.json', 'train', 'val']
    for split, n in (('train', SMALL['num_train']), ('val', SMALL['num_val'])):
        coco = _load(out, split)
        assert [c['id'] for c in coco['categories']] == list(range(1, 11))
        assert tuple(c['name'] for c in coco['categories']) == fm.FMNIST_CLASSES
        assert sorted(os.listdir(osp.join(out, split))) == [f'{i:06d}.png' for i in range(n)]
        assert [im['file_name'] for im in coco['images']] == [f'{i:06d}.png' for i in range(n)]
        assert all(im['width'] == im['height'] == SMALL['canvas_size'] for im in coco['images'])
        assert len({im['id'] for im in coco['images']}) == n
        assert [a['id'] for a in coco['annotations']] == list(
            range(1, len(coco['annotations']) + 1))
        assert summary['splits'][split]['images'] == n
        assert summary['splits'][split]['boxes'] == len(coco['annotations'])
        assert summary['splits'][split]['ann_file'] == osp.join(out, 'annotations',
                                                                f'{split}.json')
        per_image = np.bincount([a['image_id'] for a in coco['annotations']], minlength=n + 1)
        assert per_image[1:].max() <= SMALL['max_items']
    assert fd.fmnist_det_metainfo()['classes'] == fm.FMNIST_CLASSES


def test_boxes_masks_and_labels_match_the_pixels(det_set):
    """Re-derive every annotation from the PNG + the RLE mask, and its label from the pixels."""
    from pycocotools import mask as mask_util
    out, _, arrays = det_set
    checked_pixels = total = 0
    for split in ('train', 'val'):
        coco = _load(out, split)
        imgs, labels = arrays[split]
        by_image = {}
        for a in coco['annotations']:
            by_image.setdefault(a['image_id'], []).append(a)
        for im in coco['images']:
            png_img = Image.open(osp.join(out, split, im['file_name']))
            assert png_img.mode == 'L'
            png = np.array(png_img)
            assert png.shape == (im['height'], im['width'])
            anns = by_image.get(im['id'], [])
            masks = []
            for a in anns:
                total += 1
                assert a['iscrowd'] == 0
                seg = a['segmentation']
                assert isinstance(seg['counts'], str) and seg['size'] == [im['height'],
                                                                          im['width']]
                m = mask_util.decode(seg).astype(bool)
                masks.append(m)
                ys, xs = np.nonzero(m)
                assert a['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                     ys.max() - ys.min() + 1]
                assert a['area'] == int(m.sum()) >= fd.MIN_ITEM_PIXELS
                assert (png[m] > fd.PIXEL_THRESHOLD).all()
                # the item comes from this split's IDX file, at the recorded index
                assert a['fmnist_split'] == ('train' if split == 'train' else 'test')
                idx = a['fmnist_index']
                assert 0 <= idx < len(imgs) and idx not in EMPTY[split] + TINY[split]
                assert a['category_id'] == int(labels[idx]) + 1
            # pixels of an item not covered by another mask carry the item's own intensity
            for k, (a, m) in enumerate(zip(anns, masks)):
                own = m.copy()
                for j, other in enumerate(masks):
                    if j != k:
                        own &= ~other
                expected = intensity(split, a['category_id'] - 1)
                if own.any():
                    assert png[own].max() <= expected + 1
                    if abs(int(png[own].max()) - expected) <= 1:
                        checked_pixels += 1
            # boxes respect the IoU limit
            boxes = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                               a['bbox'][1] + a['bbox'][3]] for a in anns], dtype=float)
            for k in range(len(boxes)):
                for j in range(k):
                    iou = fd._iou(boxes[k], boxes[j:j + 1])[0]
                    assert iou <= SMALL['max_iou'] + 1e-9
            # nothing bright outside the masks
            if masks:
                assert (png[~np.any(masks, axis=0)] <= fd.PIXEL_THRESHOLD).all()
            else:
                assert (png <= fd.PIXEL_THRESHOLD).all()
    assert total >= 30
    assert checked_pixels >= 0.8 * total  # most items show their label's exact intensity


def test_train_and_val_use_separate_sources(det_set):
    out, _, _ = det_set
    lo_train = min(intensity('train', c) for c in range(10))
    hi_val = max(intensity('val', c) for c in range(10))
    val_max = max(np.array(Image.open(osp.join(out, 'val', f))).max()
                  for f in os.listdir(osp.join(out, 'val')))
    assert val_max <= hi_val + 1 < lo_train
    assert {a['fmnist_split'] for a in _load(out, 'train')['annotations']} == {'train'}
    assert {a['fmnist_split'] for a in _load(out, 'val')['annotations']} == {'test'}


def test_deterministic(fake_src, det_set, tmp_path):
    src, _ = fake_src
    out, _, _ = det_set
    again = str(tmp_path / 'again')
    fd.prepare_fmnist_detection(src, again, **SMALL)
    assert _tree_bytes(again) == _tree_bytes(out)
    other = str(tmp_path / 'other')
    fd.prepare_fmnist_detection(src, other, **dict(SMALL, seed=1))
    a, b = _tree_bytes(out), _tree_bytes(other)
    assert a.keys() == b.keys()
    for name in ('annotations/train.json', 'annotations/val.json', 'train/000000.png'):
        assert a[name] != b[name]


def test_stamp_skips_and_regenerates(fake_src, tmp_path):
    src, _ = fake_src
    out = str(tmp_path / 'det')
    params = dict(SMALL, num_train=4, num_val=2)
    first = fd.prepare_fmnist_detection(src, out, **params)
    stamp = osp.join(out, fd.STAMP)
    mtime = os.stat(stamp).st_mtime_ns
    again = fd.prepare_fmnist_detection(src, out, **params)
    assert again['skipped'] is True and again['splits'] == first['splits']
    assert os.stat(stamp).st_mtime_ns == mtime
    # other parameters: regenerated, old files gone
    changed = fd.prepare_fmnist_detection(src, out, **dict(params, num_val=3, max_iou=0.1))
    assert changed['skipped'] is False
    assert sorted(os.listdir(osp.join(out, 'val'))) == [
        '000000.png', '000001.png', '000002.png']
    assert json.load(open(stamp))['params']['max_iou'] == 0.1
    assert fd.prepare_fmnist_detection(src, out, **dict(params, num_val=3, max_iou=0.1),
                                       force=True)['skipped'] is False
    # a changed source invalidates the stamp too
    src2 = str(tmp_path / 'src2')
    write_fake_source(src2, seed=1)
    assert fd.prepare_fmnist_detection(src2, out, **dict(params, num_val=3, max_iou=0.1))[
        'skipped'] is False
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]  # no temp leftovers


def test_interrupted_run_leaves_no_half_set(fake_src, tmp_path, monkeypatch):
    src, _ = fake_src
    out = str(tmp_path / 'det')
    params = dict(SMALL, num_train=3, num_val=2)
    real = fd._generate_split

    def failing(split, *args, **kwargs):
        if split == 'val':
            raise KeyboardInterrupt
        return real(split, *args, **kwargs)

    monkeypatch.setattr(fd, '_generate_split', failing)
    with pytest.raises(KeyboardInterrupt):
        fd.prepare_fmnist_detection(src, out, **params)
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(fd, '_generate_split', real)
    fd.prepare_fmnist_detection(src, out, **params)
    before = _tree_bytes(out)
    monkeypatch.setattr(fd, '_generate_split', failing)
    with pytest.raises(KeyboardInterrupt):
        fd.prepare_fmnist_detection(src, out, **dict(params, seed=5))
    assert _tree_bytes(out) == before  # the previous set is intact
    assert os.listdir(tmp_path) == ['det']
    monkeypatch.setattr(fd, '_generate_split', real)
    assert fd.prepare_fmnist_detection(src, out, **params)['skipped'] is True


def test_loads_in_mmdet_coco_dataset(det_set):
    from mmengine.registry import DefaultScope
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    from pycocotools import mask as mask_util
    register_all_modules(init_default_scope=False)
    out, _, _ = det_set
    coco = _load(out, 'train')
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = CocoDataset(
            data_root=out, ann_file='annotations/train.json', data_prefix=dict(img='train/'),
            metainfo=fd.fmnist_det_metainfo(),
            pipeline=[dict(type='LoadImageFromFile', color_type='grayscale'),
                      dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                      dict(type='PackDetInputs')])
        assert len(ds) == SMALL['num_train']
        assert ds.metainfo['classes'] == fm.FMNIST_CLASSES
        i = next(k for k in range(len(ds)) if len(ds.get_data_info(k)['instances']) >= 2)
        item = ds[i]
    sample = item['data_samples']
    name = osp.basename(sample.img_path)
    image = next(im for im in coco['images'] if im['file_name'] == name)
    anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
    gt = sample.gt_instances
    expected = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                          a['bbox'][1] + a['bbox'][3]] for a in anns], dtype=np.float32)
    np.testing.assert_array_equal(gt.bboxes.tensor.numpy(), expected)
    assert gt.labels.tolist() == [a['category_id'] - 1 for a in anns]
    np.testing.assert_array_equal(
        gt.masks.to_ndarray(), np.stack([mask_util.decode(a['segmentation']) for a in anns]))
    png = np.array(Image.open(osp.join(out, 'train', name)))
    np.testing.assert_array_equal(item['inputs'].numpy()[0], png)


def test_errors_are_clear(fake_src, tmp_path, capsys):
    src, _ = fake_src
    out = str(tmp_path / 'o')
    with pytest.raises(FileNotFoundError, match='nowhere does not exist.*dataset-fashion-mnist'):
        fd.prepare_fmnist_detection(str(tmp_path / 'nowhere'), out)
    partial = tmp_path / 'partial'
    partial.mkdir()
    for name in os.listdir(src):
        if not name.startswith('t10k-labels'):
            (partial / name).write_bytes(open(osp.join(src, name), 'rb').read())
    with pytest.raises(FileNotFoundError,
                       match=r't10k-labels-idx1-ubyte\[\.gz\] not found.*dataset-fashion-mnist'):
        fd.prepare_fmnist_detection(str(partial), out, **SMALL)
    bad = [(dict(min_items=5, max_items=2), r'min_items \(5\) > max_items \(2\)'),
           (dict(num_train=0), 'num_train must be positive, got 0'),
           (dict(num_val=-1), 'num_val must be positive, got -1'),
           (dict(scale_range=(1.0, 3.0)), r'items 84 px wide .*larger than the canvas \(64 px\)'),
           (dict(scale_range=(1.5, 1.0)), 'scale_range must satisfy 0 < low <= high'),
           (dict(max_iou=1.5), r'max_iou must be a number in \[0, 1\]'),
           (dict(seed=-1), 'seed must be >= 0')]
    for kwargs, msg in bad:
        with pytest.raises(ValueError, match=msg):
            fd.prepare_fmnist_detection(src, out, **dict(SMALL, **kwargs))
    assert not osp.exists(out)
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not empty and holds no prepared.json'):
        fd.prepare_fmnist_detection(src, str(foreign), **SMALL)
    assert os.listdir(foreign) == ['keep.txt']
    # the CLI reports the same message and exits 1
    with pytest.raises(SystemExit) as e:
        fd.main(['--src', src, '--out', out, '--min-items', '4', '--max-items', '3'])
    assert e.value.code == 1
    assert 'error: min_items (4) > max_items (3)' in capsys.readouterr().err


def test_cli_prints_the_summary(fake_src, tmp_path, capsys):
    src, _ = fake_src
    out = str(tmp_path / 'cli')
    summary = fd.main(['--src', src, '--out', out, '--num-train', '3', '--num-val', '2',
                       '--canvas-size', '64', '--scale-range', '1', '1.5', '--seed', '3'])
    assert json.loads(capsys.readouterr().out) == summary
    assert summary['params']['scale_range'] == [1.0, 1.5] and summary['params']['seed'] == 3
    assert {s: v['images'] for s, v in summary['splits'].items()} == {'train': 3, 'val': 2}
    assert osp.isfile(osp.join(out, 'annotations', 'val.json'))
