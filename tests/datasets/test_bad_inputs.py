"""Bad training data: unreadable / missing images, odd image modes, images smaller than the crop.

Each error must name the culprit (file, sample, annotation file) and a failing run must keep what
it had written (earlier checkpoints stay loadable).
"""
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from PIL import Image

from mmssl_ext.cli import train as train_api
from mmssl_ext.datasets.checks import check_annotation, check_dataset, check_files
from mmssl_ext.datasets.checks import main as check_data_main
from mmssl_ext.datasets.transforms import (ImageLoadError, LoadImageFromFileChecked,
                                           MissingImageError)
from mmssl_ext.registry import DATASETS, TRANSFORMS
from tests.helpers import MOCO_FMNIST_CFG, REPO, tiny_moco_options

PIRL_FMNIST_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')


@pytest.fixture(autouse=True)
def _fresh_skip_record():
    LoadImageFromFileChecked.reset_skipped()
    yield
    LoadImageFromFileChecked.reset_skipped()


def _load(path, **kw):
    return LoadImageFromFileChecked(**kw)(dict(img_path=str(path), sample_idx=7))


# ------------------------------------------------------------------ image modes (item 1)

def _modes(tmp_path):
    """Real PNGs of every mode PIL writes, with the BGR uint8 picture each must load as."""
    rng = np.random.RandomState(0)
    h, w = 5, 7
    gray = rng.randint(0, 256, (h, w)).astype(np.uint8)
    rgb = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    alpha = rng.randint(0, 256, (h, w)).astype(np.uint8)
    g16 = rng.randint(0, 65536, (h, w)).astype(np.uint16)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    pidx = rng.randint(0, 4, (h, w)).astype(np.uint8)
    files = {}

    def save(name, img, expect):
        path = str(tmp_path / f'{name}.png')
        img.save(path)
        files[name] = (path, expect)

    rep = lambda g: np.repeat(g[..., None], 3, axis=2)  # noqa: E731
    save('L', Image.fromarray(gray, 'L'), rep(gray))
    save('LA', Image.fromarray(np.dstack([gray, alpha]), 'LA'), rep(gray))
    save('RGB', Image.fromarray(rgb, 'RGB'), rgb[..., ::-1])
    save('RGBA', Image.fromarray(np.dstack([rgb, alpha]), 'RGBA'), rgb[..., ::-1])
    save('I16', Image.fromarray(g16), rep((g16 >> 8).astype(np.uint8)))
    pimg = Image.fromarray(pidx, 'P')
    pimg.putpalette(palette.ravel().tolist() + [0] * (768 - palette.size))
    save('P', pimg, palette[pidx][..., ::-1])
    save('1', Image.fromarray(gray > 127).convert('1'), rep(np.where(gray > 127, 255, 0)))
    assert Image.open(files['I16'][0]).mode.startswith('I')  # really a 16-bit file
    return files


@pytest.mark.parametrize('backend,color_type', [('cv2', 'color'), ('pillow', 'color'),
                                                ('cv2', 'unchanged'), ('pillow', 'unchanged'),
                                                ('cv2', 'grayscale')])
def test_every_png_mode_loads_as_hw3_uint8(tmp_path, backend, color_type):
    for name, (path, expect) in _modes(tmp_path).items():
        if backend == 'pillow' and color_type == 'color' and name == 'LA':
            continue  # mmcv composites gray+alpha on a fixed canvas colour (its documented choice)
        out = _load(path, imdecode_backend=backend, color_type=color_type)
        img = out['img']
        assert img.shape == (5, 7, 3) and img.dtype == np.uint8, (name, img.shape, img.dtype)
        assert out['img_shape'] == (5, 7) and out['ori_shape'] == (5, 7)
        if color_type == 'grayscale':
            assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
            if name in ('L', 'LA', 'I16', '1'):
                np.testing.assert_array_equal(img, expect, err_msg=name)
        else:
            np.testing.assert_array_equal(img, expect, err_msg=f'{name} ({backend})')


def test_default_output_equals_mmcv(tmp_path):
    """With the defaults (cv2, colour) the checked loader gives mmcv's pixels exactly."""
    from mmcv.transforms import LoadImageFromFile
    for name, (path, _) in _modes(tmp_path).items():
        ref = LoadImageFromFile()(dict(img_path=path))['img']
        np.testing.assert_array_equal(_load(path)['img'], ref, err_msg=name)
    assert _load(_modes(tmp_path)['L'][0], to_float32=True)['img'].dtype == np.float32


# ------------------------------------------------------------------ unreadable files (item 1)

def _bad_files(tmp_path):
    good = tmp_path / 'good.png'
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / 'truncated.png').write_bytes(data[:len(data) // 2])
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'text.png').write_bytes(b'this is not an image')
    jpg = tmp_path / 'good.jpg'
    Image.fromarray(np.full((16, 16, 3), 99, np.uint8)).save(jpg)
    (tmp_path / 'truncated.jpg').write_bytes(jpg.read_bytes()[:-40])
    return ['truncated.png', 'empty.png', 'text.png', 'truncated.jpg']


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_unreadable_file_error_names_the_file_and_the_reason(tmp_path, backend):
    for name in _bad_files(tmp_path):
        with pytest.raises(ImageLoadError) as e:
            _load(tmp_path / name, imdecode_backend=backend)
        msg = str(e.value)
        assert str(tmp_path / name) in msg and 'sample_idx 7' in msg, msg
        assert ('empty (0 bytes)' if name == 'empty.png' else 'truncated, corrupt or not an '
                'image') in msg
        assert 'skip_corrupt=True' in msg
        assert not isinstance(e.value, MissingImageError)


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(MissingImageError, match=r'image file not found: .*nope\.png '
                       r'\(sample_idx 7\).*tools/check_data\.py'):
        _load(tmp_path / 'nope.png')
    with pytest.raises(FileNotFoundError):  # still a FileNotFoundError for callers
        _load(tmp_path / 'nope.png')


def test_skip_corrupt_returns_none_counts_and_logs(tmp_path, capsys):
    from mmengine.logging import MMLogger
    names = _bad_files(tmp_path)
    # 'current' = the newest MMLogger: a fresh one writes to this test's captured stdout (one
    # made by an earlier test keeps the stream it was created with)
    MMLogger.get_instance(f'skip_corrupt_{tmp_path.name}', log_level='INFO')
    t = LoadImageFromFileChecked(skip_corrupt=True)
    for name in names:
        assert t(dict(img_path=str(tmp_path / name))) is None
    assert set(LoadImageFromFileChecked.skipped) == {str(tmp_path / n) for n in names}
    logged = capsys.readouterr().out  # mmengine's logger writes to stdout
    for i, n in enumerate(names, 1):
        assert f'skipped {tmp_path / n}' in logged
        assert f'({i} file(s) skipped so far' in logged
    # a missing file is not "corrupt": it still raises unless skip_missing is set
    with pytest.raises(MissingImageError):
        t(dict(img_path=str(tmp_path / 'nope.png')))
    assert LoadImageFromFileChecked(skip_missing=True)(
        dict(img_path=str(tmp_path / 'nope.png'))) is None
    assert LoadImageFromFileChecked.skipped[str(tmp_path / 'nope.png')] == 'file not found'


def _tree_copy(tiny_tree, tmp_path):
    tree = str(tmp_path / 'tree')
    shutil.copytree(tiny_tree, tree)
    return tree


def _train_lines(tree):
    with open(osp.join(tree, 'meta', 'train.txt')) as f:
        return [line.split()[0] for line in f if line.strip()]


def test_dataset_picks_another_sample_for_a_skipped_file(tiny_tree, tmp_path):
    tree = _tree_copy(tiny_tree, tmp_path)
    bad = osp.join(tree, 'train', _train_lines(tree)[0])
    with open(bad, 'wb') as f:
        f.write(b'\x89PNG broken')
    cfg = dict(type='CustomDataset', data_root=tree, ann_file='meta/train.txt',
               data_prefix='train', pipeline=[
                   dict(type='LoadImageFromFileChecked', skip_corrupt=True),
                   dict(type='PackInputs')])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(cfg)
    out = ds[0]  # sample 0 is the broken file: mmengine's BaseDataset refetches another one
    assert out['inputs'].shape == (3, 28, 28)
    assert out['data_samples'].sample_idx != 0
    assert LoadImageFromFileChecked.skipped == {bad: LoadImageFromFileChecked.skipped[bad]}
    cfg['pipeline'][0] = dict(type='LoadImageFromFileChecked')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(cfg)
    with pytest.raises(ImageLoadError, match=f'{bad}.*sample_idx 0'):
        ds[0]


def test_train_tool_names_the_broken_file_and_keeps_earlier_checkpoints(tiny_tree, tmp_path):
    """tools/train.py loads training images with the checked loader: a broken file met at
    iteration 6 stops the run with its path and annotation file; iter_2/iter_4 stay intact."""
    tree = _tree_copy(tiny_tree, tmp_path)
    bad = osp.join(tree, 'train', _train_lines(tree)[-1])  # the last sample: iteration 6
    with open(bad, 'r+b') as f:
        f.truncate(40)
    work = str(tmp_path / 'work')
    opts = tiny_moco_options(tree, work, max_iters=8, ckpt_interval=2) + [
        'train_dataloader.sampler.shuffle=False']
    with pytest.raises(ImageLoadError) as e:
        train_api.main([MOCO_FMNIST_CFG, '--work-dir', work, '--cfg-options', *opts])
    msg = str(e.value)
    assert bad in msg and 'truncated, corrupt or not an image' in msg
    assert osp.join(tree, 'meta', 'train.txt') in msg and 'ann_file' in msg
    for it in (2, 4):
        ckpt = torch.load(osp.join(work, f'iter_{it}.pth'), map_location='cpu')
        assert ckpt['meta']['iter'] == it
    assert not osp.exists(osp.join(work, 'iter_6.pth'))


def test_missing_file_error_names_the_annotation_file(tiny_tree, tmp_path):
    """The path tools/train.py takes for a missing file (same as for a broken one above)."""
    from types import SimpleNamespace

    from mmssl_ext.engine.runner import _name_annotation_file
    tree = _tree_copy(tiny_tree, tmp_path)
    gone = osp.join(tree, 'train', _train_lines(tree)[2])
    os.remove(gone)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dict(type='RepeatDataset', times=2, dataset=dict(
            type='ImageNet', data_root=tree, split='train',
            pipeline=[dict(type='LoadImageFromFileChecked')])))
    with pytest.raises(MissingImageError) as e:
        ds[2]
    err = _name_annotation_file(
        e.value, SimpleNamespace(train_dataloader=SimpleNamespace(dataset=ds)))
    assert isinstance(err, MissingImageError)
    msg = str(err)
    assert f'image file not found: {gone} (sample_idx 2)' in msg
    assert f'listed in the annotation file {osp.join(tree, "meta", "train.txt")}' in msg


def test_train_tool_swaps_only_plain_colour_loading(tmp_path):
    args = train_api.parse_args([MOCO_FMNIST_CFG])
    cfg = train_api.merge_args(train_api.load_config(MOCO_FMNIST_CFG), args)
    assert cfg.train_dataloader.dataset.pipeline[0].type == 'LoadImageFromFileChecked'
    # validation / kNN pipelines are not touched, nor other colour types / mmdet configs
    assert cfg.knn_eval.train_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile'
    args = train_api.parse_args([MOCO_FMNIST_CFG, '--cfg-options',
                                 'train_dataloader.dataset.pipeline.0.color_type=grayscale'])
    cfg = train_api.merge_args(train_api.load_config(MOCO_FMNIST_CFG), args)
    assert cfg.train_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile'


# ------------------------------------------------------------------ small images (item 2)

@pytest.mark.parametrize('size', [(8, 8), (1, 1), (1, 40)])
def test_images_smaller_than_the_crop_are_upsampled(size):
    img = np.random.RandomState(0).randint(0, 256, size + (3, )).astype(np.uint8)
    jig = TRANSFORMS.build(dict(type='JigsawPatches', crop_size=192, patch_size=64))
    out = jig(dict(img=img.copy()))
    assert out['patches'].shape == (9, 3, 64, 64)
    views = TRANSFORMS.build(dict(
        type='PIRLViews', image_pipeline=[dict(type='RandomResizedCrop', scale=64)],
        transform_pipeline=[dict(type='RandomRotation90'),
                            dict(type='JigsawPatches', crop_size=96, patch_size=32)]))
    out = views(dict(img=img.copy(), img_shape=size))
    assert out['img'][0].shape == (64, 64, 3) and out['img'][1].shape == (9, 3, 32, 32)
    # a gray 2-D image too
    assert jig(dict(img=img[..., 0].copy()))['patches'].shape == (9, 3, 64, 64)


# ------------------------------------------------------------------ missing files (item 3)

def test_check_annotation_lists_missing_files(tiny_tree, tmp_path):
    tree = _tree_copy(tiny_tree, tmp_path)
    names = _train_lines(tree)
    gone = [names[3], names[10]]
    for n in gone:
        os.remove(osp.join(tree, 'train', n))
    shutil.rmtree(osp.join(tree, 'train', 'class2'))  # a whole folder
    ann = osp.join(tree, 'meta', 'train.txt')
    res = check_annotation(ann, osp.join(tree, 'train'))
    class2 = [n for n in names if n.startswith('class2/')]
    assert res.total == len(names)
    assert res.missing == [osp.join(tree, 'train', n) for n in gone + class2]
    text = res.summary(max_listed=3)
    assert f'{ann}: {2 + len(class2)} of {len(names)} files are missing' in text
    assert gone[0] in text and f'and {2 + len(class2) - 3} more' in text
    assert check_annotation(osp.join(tiny_tree, 'meta', 'train.txt'),
                            osp.join(tiny_tree, 'train')).ok
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        check_annotation(osp.join(tree, 'nope.txt'))
    assert check_files(['s3://bucket/x.png']).unchecked == 1


def test_check_data_tool_builds_the_config_dataset(tiny_tree, tmp_path, capsys):
    tree = _tree_copy(tiny_tree, tmp_path)
    name = _train_lines(tree)[5]
    os.remove(osp.join(tree, 'train', name))
    res = check_data_main([PIRL_FMNIST_CFG, '--split', 'train', '--cfg-options',
                           f'train_dataloader.dataset.data_root={tree}'])
    assert not res['train'].ok and res['train'].missing == [osp.join(tree, 'train', name)]
    out = capsys.readouterr().out
    assert f'1 of {len(_train_lines(tree))} files are missing' in out and name in out
    assert 'train.txt' in out  # the annotation file is named
    from mmssl_ext.datasets.checks import cli
    assert cli([PIRL_FMNIST_CFG, '--cfg-options',
                f'train_dataloader.dataset.data_root={tiny_tree}']) == 0
    assert cli([PIRL_FMNIST_CFG, '--cfg-options',
                f'train_dataloader.dataset.data_root={tree}']) == 1


def test_check_dataset_on_a_built_dataset(tiny_tree, tmp_path):
    tree = _tree_copy(tiny_tree, tmp_path)
    name = _train_lines(tree)[0]
    os.remove(osp.join(tree, 'train', name))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dict(type='RepeatDataset', times=3, dataset=dict(
            type='CustomDataset', data_root=tree, ann_file='meta/train.txt',
            data_prefix='train', pipeline=[])))
    res = check_dataset(ds)
    assert res.total == 3 * len(_train_lines(tree))
    assert res.missing == [osp.join(tree, 'train', name)] * 3
    assert 'RepeatDataset' in res.source and 'train.txt' in res.source
