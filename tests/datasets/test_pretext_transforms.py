"""PIRL pretext transforms: permutation sets, jigsaw patches, 90-degree rotations, the two-view
wrapper, and their packing / collation by mmpretrain's ``PackInputs`` and mmengine's collate."""
from typing import Dict

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate
from mmpretrain.datasets import CustomDataset

from mmssl_ext.datasets.transforms import (MAX_PERMUTATIONS, JigsawPatches, PIRLViews,
                                           RandomRotation90, generate_permutation_set)
from mmssl_ext.registry import TRANSFORMS

CELL = 85  # 255 // 3


def _check_permutation_rows(perms: np.ndarray, num: int, n: int = 9) -> None:
    """``perms`` is ``(num, n)`` int64, each row a permutation of ``range(n)``, rows distinct."""
    assert perms.shape == (num, n)
    assert perms.dtype == np.int64
    assert (np.sort(perms, axis=1) == np.arange(n)).all()
    codes = perms @ (n ** np.arange(n, dtype=np.int64))  # distinct rows <-> distinct codes
    assert len(np.unique(codes)) == num


def _min_pairwise_hamming(perms: np.ndarray) -> int:
    dist = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    np.fill_diagonal(dist, perms.shape[1] + 1)
    return int(dist.min())


def _cell_image() -> np.ndarray:
    """255x255x3 uint8 whose 3x3 cells (85 px) are constant and distinct: cell k has 20 * k + 7."""
    img = np.zeros((255, 255, 3), dtype=np.uint8)
    for k in range(9):
        r, c = divmod(k, 3)
        img[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = 20 * k + 7
    return img


# ---------------------------------------------------------------------------- permutation sets
@pytest.mark.parametrize('num', [1, 35, 1000, MAX_PERMUTATIONS])
def test_permutation_set_valid_and_seeded(num):
    state = np.random.get_state()
    perms = generate_permutation_set(num, seed=3)
    _check_permutation_rows(perms, num)
    # the global RNG is neither used nor advanced
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert np.array_equal(generate_permutation_set(num, seed=3), perms)
    # a different seed gives a different set (for 9!: the same rows in another order)
    assert not np.array_equal(generate_permutation_set(num, seed=4), perms)


def test_max_hamming_beats_random():
    hamming = generate_permutation_set(100, seed=0, method='max_hamming')
    random = generate_permutation_set(100, seed=0, method='random')
    _check_permutation_rows(hamming, 100)
    assert np.array_equal(generate_permutation_set(100, seed=0, method='max_hamming'), hamming)
    assert not np.array_equal(generate_permutation_set(100, seed=1, method='max_hamming'), hamming)
    assert _min_pairwise_hamming(hamming) > _min_pairwise_hamming(random)


def test_permutation_set_other_grids():
    all_2x2 = generate_permutation_set(24, seed=0, grid=2)
    _check_permutation_rows(all_2x2, 24, n=4)
    _check_permutation_rows(generate_permutation_set(10, seed=0, grid=4), 10, n=16)
    _check_permutation_rows(generate_permutation_set(5, seed=0, grid=4, method='max_hamming'),
                            5, n=16)
    with pytest.raises(ValueError, match='25'):
        generate_permutation_set(25, grid=2)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num=0), 'num=0'),
    (dict(num=MAX_PERMUTATIONS + 1), '362881'),
    (dict(num=10, method='spiral'), 'spiral'),
])
def test_permutation_set_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_permutation_set(**kwargs)


# ---------------------------------------------------------------------------- jigsaw patches
@pytest.mark.parametrize('shape', [(300, 300, 3), (300, 300)])
def test_jigsaw_default_layout(shape):
    np.random.seed(0)
    img = np.random.randint(0, 256, size=shape, dtype=np.uint8)
    jigsaw = JigsawPatches()
    out = jigsaw(dict(img=img))
    patches = out['patches']
    assert patches.shape == (9, 3, 64, 64)
    assert patches.dtype == np.uint8
    assert patches.flags.c_contiguous
    assert jigsaw.permutations.shape == (1000, 9)
    assert isinstance(out['jigsaw_label'], int) and 0 <= out['jigsaw_label'] < 1000
    assert out['jigsaw_perm'].dtype == np.int64
    assert np.array_equal(out['jigsaw_perm'], jigsaw.permutations[out['jigsaw_label']])
    if len(shape) == 2:  # grayscale expanded to 3 identical channels
        assert (patches[:, 0] == patches[:, 1]).all() and (patches[:, 1] == patches[:, 2]).all()
    else:
        assert not (patches[:, 0] == patches[:, 1]).all()


def test_jigsaw_applies_recorded_permutation():
    img = _cell_image()
    jigsaw = JigsawPatches(crop_scale=(1.0, 1.0))
    np.random.seed(7)
    perms_seen = []
    for _ in range(5):
        out = jigsaw(dict(img=img.copy()))
        perm = out['jigsaw_perm']
        assert np.array_equal(perm, jigsaw.permutations[out['jigsaw_label']])
        for i in range(9):
            assert (out['patches'][i] == 20 * perm[i] + 7).all(), (i, perm)
        perms_seen.append(tuple(perm))
    assert any(p != tuple(range(9)) for p in perms_seen)
    assert len(set(perms_seen)) > 1


def test_jigsaw_patch_jitter_stays_inside_cell():
    # pixel value = x coordinate: a patch's first column tells where it was cut from
    ramp = np.tile(np.arange(255, dtype=np.uint8)[None, :, None], (255, 1, 3))
    jigsaw = JigsawPatches(crop_scale=(1.0, 1.0))
    np.random.seed(0)
    offsets = set()
    for _ in range(10):
        out = jigsaw(dict(img=ramp))
        for i, cell in enumerate(out['jigsaw_perm']):
            x0 = int(out['patches'][i, 0, 0, 0])
            dx = x0 - (cell % 3) * CELL
            assert 0 <= dx <= CELL - 64
            assert np.array_equal(out['patches'][i, 0, 0], x0 + np.arange(64))
            offsets.add(dx)
    assert len(offsets) > 5  # the patch position is jittered


def test_jigsaw_reproducible_with_global_seed():
    img = np.random.RandomState(0).randint(0, 256, size=(200, 240, 3), dtype=np.uint8)
    jigsaw = JigsawPatches()

    def run(seed: int) -> Dict:
        np.random.seed(seed)
        return jigsaw(dict(img=img.copy()))

    a, b, c = run(1), run(1), run(2)
    assert np.array_equal(a['patches'], b['patches']) and a['jigsaw_label'] == b['jigsaw_label']
    assert not np.array_equal(a['patches'], c['patches'])


def test_jigsaw_patch_pipeline_and_errors():
    img = np.random.RandomState(0).randint(0, 256, size=(300, 300, 3), dtype=np.uint8)
    jigsaw = JigsawPatches(patch_pipeline=[dict(type='RandomGrayscale', prob=1.0)])
    patches = jigsaw(dict(img=img))['patches']
    assert patches.shape == (9, 3, 64, 64) and patches.dtype == np.uint8
    assert (patches[:, 0] == patches[:, 2]).all()  # every patch was grayed independently
    with pytest.raises(ValueError, match=r'patch_size=86.*85'):
        JigsawPatches(patch_size=86)
    assert JigsawPatches(patch_size=85).cell_size == 85


# ---------------------------------------------------------------------------- rotation
def test_rotation_matches_rot90():
    img = np.random.RandomState(0).randint(0, 256, size=(5, 7, 3), dtype=np.uint8)
    rot = RandomRotation90()
    np.random.seed(0)
    labels = set()
    for _ in range(30):
        out = rot(dict(img=img))
        label = out['rot_label']
        assert np.array_equal(out['img'], np.rot90(img, label))
        assert out['img'].flags.c_contiguous
        assert out['img_shape'] == out['img'].shape[:2]
        labels.add(label)
    assert labels == {0, 1, 2, 3}


def test_rotation_restricted_angles_and_errors():
    img = np.random.RandomState(1).randint(0, 256, size=(5, 7), dtype=np.uint8)
    rot = RandomRotation90(angles=(90, 270))
    np.random.seed(0)
    labels = set()
    for _ in range(20):
        out = rot(dict(img=img))
        label = out['rot_label']
        assert label in (0, 1)
        assert np.array_equal(out['img'], np.rot90(img, (1, 3)[label]))
        assert out['img'].shape == (7, 5)
        labels.add(label)
    assert labels == {0, 1}
    with pytest.raises(ValueError, match='45'):
        RandomRotation90(angles=(0, 45))


# ---------------------------------------------------------------------------- PIRL views
def test_pirl_views_keeps_image_and_copies_labels():
    img = np.random.RandomState(2).randint(0, 256, size=(6, 9, 3), dtype=np.uint8)
    orig = img.copy()
    views = PIRLViews(image_pipeline=[], transform_pipeline=[dict(type='RandomRotation90')])
    np.random.seed(3)
    out = views(dict(img=img, sample_idx=11))
    image_view, transformed = out['img']
    assert np.array_equal(image_view, orig)
    assert np.array_equal(transformed, np.rot90(orig, out['rot_label']))
    assert out['sample_idx'] == 11 and 'jigsaw_label' not in out
    assert np.array_equal(img, orig)  # the loaded image is not modified


IMAGE_PIPELINE = [dict(type='RandomResizedCrop', scale=32),
                  dict(type='RandomFlip', prob=0.5)]
JIGSAW = dict(type='JigsawPatches', num_permutations=100)


@pytest.mark.parametrize('transform_pipeline, keys, transformed_shape', [
    ([JIGSAW], ['jigsaw_label'], (4, 9, 3, 64, 64)),
    ([dict(type='RandomRotation90'), JIGSAW], ['jigsaw_label', 'rot_label'], (4, 9, 3, 64, 64)),
    ([dict(type='RandomRotation90'), dict(type='RandomResizedCrop', scale=24)], ['rot_label'],
     (4, 3, 24, 24)),
], ids=['jigsaw', 'jigsaw+rotation', 'rotation'])
def test_pirl_pipeline_packs_and_collates(tmp_path, transform_pipeline, keys, transformed_shape):
    rng = np.random.RandomState(0)
    for i in range(4):
        cv2.imwrite(str(tmp_path / f'{i}.png'),
                    rng.randint(0, 256, size=(90 + 10 * i, 100, 3), dtype=np.uint8))
    pipeline = [TRANSFORMS.build(cfg) for cfg in [
        dict(type='LoadImageFromFile'),
        dict(type='PIRLViews', image_pipeline=IMAGE_PIPELINE,
             transform_pipeline=transform_pipeline),
        dict(type='PackInputs', algorithm_keys=['jigsaw_label', 'rot_label']),
    ]]
    dataset = CustomDataset(data_root=str(tmp_path), with_label=False, pipeline=pipeline)
    assert len(dataset) == 4
    np.random.seed(0)
    batch = default_collate([dataset[i] for i in range(4)])

    inputs = batch['inputs']
    assert isinstance(inputs, list) and len(inputs) == 2
    assert inputs[0].shape == (4, 3, 32, 32) and inputs[0].dtype == torch.uint8
    assert inputs[1].shape == transformed_shape and inputs[1].dtype == torch.uint8
    samples = batch['data_samples']
    assert [s.sample_idx for s in samples] == [0, 1, 2, 3]
    for s in samples:
        for key in ('jigsaw_label', 'rot_label'):
            assert (key in s) == (key in keys)
        if 'jigsaw_label' in keys:
            assert 0 <= s.jigsaw_label < 100
        if 'rot_label' in keys:
            assert s.rot_label in range(4)
