"""InpaintingMask: central-square and random-block masks of the Context Encoder, their packing."""
import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate

from mmssl_ext.datasets.transforms import InpaintingMask
from mmssl_ext.registry import TRANSFORMS


def _img(h=32, w=32, c=3, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, c)).astype(np.uint8)


def _reference_center(h, w, ratio):
    """Independent reference: a centred ratio*h x ratio*w rectangle (half rounded up)."""
    mh, mw = int(ratio * h + 0.5), int(ratio * w + 0.5)
    ref = np.zeros((h, w), np.uint8)
    top, left = (h - mh) // 2, (w - mw) // 2
    ref[top:top + mh, left:left + mw] = 1
    return ref


def test_center_square_32px_exact():
    img = _img()
    before = img.copy()
    out = InpaintingMask(mode='center', ratio=0.5)(dict(img=img))
    mask = out['mask']
    assert mask.dtype == np.uint8 and mask.shape == (32, 32)
    expected = np.zeros((32, 32), np.uint8)
    expected[8:24, 8:24] = 1  # a 16 px square in the middle: a quarter of the area
    assert np.array_equal(mask, expected)
    assert out['img'] is img and np.array_equal(img, before)  # image untouched


@pytest.mark.parametrize('h,w,ratio', [(128, 128, 0.5), (27, 27, 0.5), (30, 40, 0.5),
                                       (33, 20, 0.3), (224, 224, 0.25)])
def test_center_geometry_matches_reference(h, w, ratio):
    mask = InpaintingMask(mode='center', ratio=ratio)(dict(img=_img(h, w)))['mask']
    assert np.array_equal(mask, _reference_center(h, w, ratio))
    if (h, w, ratio) == (128, 128, 0.5):  # the paper's 64 x 64 centre of a 128 x 128 image
        rows, cols = np.nonzero(mask)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (32, 95, 32, 95)
    if (h, w) == (27, 27):  # 13.5 rounds up to 14 and the region is centred (6 + 14 + 7)
        assert mask.sum() == 14 * 14 and mask[6, 6] == 1 and mask[5, 6] == 0


def test_center_on_grayscale_2d_image():
    mask = InpaintingMask()(dict(img=_img(32, 32)[..., 0]))['mask']
    assert mask.shape == (32, 32) and mask.sum() == 256


def test_center_region_too_small_is_an_error():
    with pytest.raises(ValueError, match='empty central region'):
        InpaintingMask(ratio=0.4)(dict(img=_img(1, 1)))


@pytest.mark.parametrize('size', [32, 128])
def test_random_blocks_fraction_and_values(size):
    t = InpaintingMask(mode='random_blocks', target_fraction=0.25,
                       block_ratio_range=(0.125, 0.375))
    biggest_block = round(0.375 * size) ** 2 / size ** 2
    np.random.seed(0)
    fractions = []
    for _ in range(50):
        mask = t(dict(img=_img(size, size)))['mask']
        assert mask.dtype == np.uint8 and mask.shape == (size, size)
        assert set(np.unique(mask)) <= {0, 1}
        frac = mask.mean()
        # blocks are added until 1/4 is reached; the last one overshoots by less than one block
        assert 0.25 <= frac < 0.25 + biggest_block
        fractions.append(frac)
    assert len(set(fractions)) > 10  # actually random


def test_random_blocks_are_squares_in_range():
    """With one block, the mask is exactly one square whose side is in the range."""
    t = InpaintingMask(mode='random_blocks', target_fraction=0.9, block_ratio_range=(0.25, 0.5),
                       max_blocks=1)
    np.random.seed(3)
    for _ in range(20):
        mask = t(dict(img=_img(32, 40)))['mask']  # short side 32: sides 8..16
        rows, cols = np.nonzero(mask)
        side = rows.max() - rows.min() + 1
        assert side == cols.max() - cols.min() + 1 and mask.sum() == side * side
        assert 8 <= side <= 16


def test_random_blocks_deterministic_under_numpy_seed():
    t = InpaintingMask(mode='random_blocks')
    np.random.seed(123)
    a = [t(dict(img=_img()))['mask'] for _ in range(3)]
    np.random.seed(123)
    b = [t(dict(img=_img()))['mask'] for _ in range(3)]
    np.random.seed(124)
    c = [t(dict(img=_img()))['mask'] for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_max_blocks_caps_the_fraction():
    t = InpaintingMask(mode='random_blocks', target_fraction=0.9,
                       block_ratio_range=(0.125, 0.125), max_blocks=2)
    np.random.seed(0)
    mask = t(dict(img=_img()))['mask']
    assert 16 <= mask.sum() <= 2 * 16  # at most two 4 px blocks


@pytest.mark.parametrize('kwargs,match', [
    (dict(mode='ring'), 'mode'),
    (dict(ratio=0.0), 'ratio'),
    (dict(ratio=1.0), 'ratio'),
    (dict(target_fraction=0.0), 'target_fraction'),
    (dict(target_fraction=1.5), 'target_fraction'),
    (dict(block_ratio_range=(0.5, 0.2)), 'block_ratio_range'),
    (dict(block_ratio_range=(0.0, 0.2)), 'block_ratio_range'),
    (dict(block_ratio_range=0.3), 'block_ratio_range'),
    (dict(max_blocks=0), 'max_blocks'),
    (dict(max_blocks=2.5), 'max_blocks'),
])
def test_bad_arguments_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InpaintingMask(**kwargs)


def test_multi_view_input_is_an_error():
    with pytest.raises(ValueError, match='single view'):
        InpaintingMask()(dict(img=[_img(), _img()]))


def test_built_from_registry_and_packed_as_tensor_mask():
    """Through the registry and mmpretrain's PackInputs: ``mask`` is a default key, stored as an
    H x W tensor on the data sample; default_collate keeps the samples as a list."""
    pipeline = [TRANSFORMS.build(dict(type='InpaintingMask', mode='center')),
                TRANSFORMS.build(dict(type='PackInputs'))]
    samples = []
    for seed in range(2):
        res = dict(img=_img(seed=seed))
        for t in pipeline:
            res = t(res)
        samples.append(res)
    batch = default_collate(samples)
    assert batch['inputs'].shape == (2, 3, 32, 32)
    masks = torch.stack([ds.mask for ds in batch['data_samples']])
    assert masks.shape == (2, 32, 32) and masks.dtype == torch.uint8
    assert int(masks[0].sum()) == 256 and masks[0, 8, 8] == 1 and masks[0, 7, 8] == 0
