"""Transforms of the covariant pretext tasks: all four rotations (RotNet), relative patch
location (Doersch et al.), and the max-Hamming permutation sets of Jigsaw puzzles."""
import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate
from mmpretrain.datasets.transforms import PackInputs

from mmssl_ext.datasets.transforms import (NEIGHBOUR_OFFSETS, AllRotations90, JigsawPatches,
                                           RelativeLocationPatches, generate_permutation_set)


def _min_pairwise_hamming(perms: np.ndarray) -> int:
    dist = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    np.fill_diagonal(dist, perms.shape[1] + 1)
    return int(dist.min())


# ------------------------------------------------------------------------------------ rotation
def test_all_rotations_unrotate_to_the_input():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    out = AllRotations90()(dict(img=img.copy()))
    views, labels = out['img'], out['rot_label']
    assert views.shape == (4, 3, 12, 12) and views.dtype == np.uint8
    assert views.flags.c_contiguous
    assert labels.tolist() == [0, 1, 2, 3]
    for view, label in zip(views, labels):
        hwc = view.transpose(1, 2, 0)
        # un-rotate (clockwise) by the label's quarter turns: the original image comes back
        assert np.array_equal(np.rot90(hwc, -int(label)), img)
    # four different images (a random image has no rotational symmetry)
    assert len({v.tobytes() for v in views}) == 4


def test_all_rotations_subset_gray_and_errors():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)  # 2-D gray image
    out = AllRotations90(angles=(0, 180))(dict(img=img))
    assert out['img'].shape == (2, 1, 4, 4)
    assert out['rot_label'].tolist() == [0, 1]
    assert np.array_equal(out['img'][1, 0], np.rot90(img, 2))
    with pytest.raises(ValueError, match='square image'):
        AllRotations90()(dict(img=np.zeros((4, 6, 3), np.uint8), img_path='a.png'))
    # 0/180 only: a non-square image still stacks
    assert AllRotations90(angles=(0, 180))(dict(img=np.zeros((4, 6, 3), np.uint8)))[
        'img'].shape == (2, 3, 4, 6)
    with pytest.raises(ValueError, match='multiples of 90'):
        AllRotations90(angles=(0, 45))
    with pytest.raises(ValueError, match='must not be empty'):
        AllRotations90(angles=())


def test_all_rotations_pack_and_collate():
    img = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    packed = PackInputs(algorithm_keys=['rot_label'])(AllRotations90()(dict(img=img)))
    batch = default_collate([packed, packed])
    assert batch['inputs'].shape == (2, 4, 3, 8, 8)
    assert torch.equal(torch.as_tensor(batch['data_samples'][0].rot_label), torch.arange(4))


# --------------------------------------------------------------------------- relative location
def _coordinate_image(size: int) -> np.ndarray:
    """(size, size, 3) uint16-free encoding: channel 0 = y, channel 1 = x (size <= 256)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([yy, xx, np.zeros_like(yy)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize('patch,gap,jitter', [(16, 4, 2), (10, 0, 0), (8, 6, 3)])
def test_relative_location_label_matches_geometry(patch, gap, jitter, monkeypatch):
    t = RelativeLocationPatches(patch_size=patch, gap=gap, jitter=jitter)
    size = 3 * patch + 2 * gap + 2 * jitter
    assert t.crop_size == size
    # no random crop: the crop is the (already crop-sized) coordinate image itself
    monkeypatch.setattr(t.crop, 'transform', lambda results: results)
    img = _coordinate_image(size)
    np.random.seed(0)
    seen = set()
    step = patch + gap
    for _ in range(200):
        out = t(dict(img=img.copy()))
        label, patches, boxes = out['rel_loc_label'], out['patches'], out['rel_loc_boxes']
        assert patches.shape == (2, 3, patch, patch) and patches.dtype == np.uint8
        seen.add(label)
        # where the pixels came from, read off the coordinate encoding
        tops = [int(p[0, 0, 0]) for p in patches]
        lefts = [int(p[1, 0, 0]) for p in patches]
        assert [b[1] for b in boxes] == tops and [b[0] for b in boxes] == lefts
        # the centre patch sits on the central lattice cell, within the jitter
        assert abs(tops[0] - (jitter + step)) <= jitter
        assert abs(lefts[0] - (jitter + step)) <= jitter
        # the neighbour is displaced by the label's lattice offset, within two jitters
        drow, dcol = NEIGHBOUR_OFFSETS[label]
        assert abs(tops[1] - tops[0] - drow * step) <= 2 * jitter
        assert abs(lefts[1] - lefts[0] - dcol * step) <= 2 * jitter
        # sign of the displacement is unambiguous (the gap + patch exceeds twice the jitter)
        if drow:
            assert np.sign(tops[1] - tops[0]) == drow
        if dcol:
            assert np.sign(lefts[1] - lefts[0]) == dcol
        # patches stay inside the crop
        assert boxes.min() >= 0 and boxes.max() <= size
    assert seen == set(range(8))


def test_relative_location_offsets_are_the_eight_neighbours():
    assert len(NEIGHBOUR_OFFSETS) == 8 and len(set(NEIGHBOUR_OFFSETS)) == 8
    assert (0, 0) not in NEIGHBOUR_OFFSETS
    assert all(abs(r) <= 1 and abs(c) <= 1 for r, c in NEIGHBOUR_OFFSETS)
    assert list(NEIGHBOUR_OFFSETS) == sorted(NEIGHBOUR_OFFSETS)  # row-major order


def test_relative_location_small_gray_image_pipeline_and_errors():
    t = RelativeLocationPatches(patch_size=16, gap=4, jitter=2, patch_pipeline=[
        dict(type='RandomGrayscale', prob=1.0, keep_channels=False)])
    out = t(dict(img=np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)))
    assert out['patches'].shape == (2, 3, 16, 16)  # gray input, gray patches re-expanded
    packed = PackInputs(input_key='patches', algorithm_keys=['rel_loc_label'])(out)
    assert packed['inputs'].shape == (2, 3, 16, 16)
    assert int(packed['data_samples'].rel_loc_label) == out['rel_loc_label']
    for kwargs, name in [(dict(patch_size=0), 'patch_size'), (dict(gap=-1), 'gap'),
                         (dict(jitter=1.5), 'jitter')]:
        with pytest.raises(ValueError, match=name):
            RelativeLocationPatches(**kwargs)


# ----------------------------------------------------------------- Jigsaw's permutation sets
@pytest.mark.parametrize('num', [35, 100, 1000, 2000])
def test_max_hamming_sets_size_unique_and_spread(num):
    perms = generate_permutation_set(num, seed=0, method='max_hamming')
    assert perms.shape == (num, 9)
    assert (np.sort(perms, axis=1) == np.arange(9)).all()
    assert len({row.tobytes() for row in perms}) == num  # unique
    random = generate_permutation_set(num, seed=0, method='random')
    assert _min_pairwise_hamming(perms) >= _min_pairwise_hamming(random)
    # and the average distance is not worse than a random set's either
    mean = (perms[:, None] != perms[None]).sum(-1).mean()
    assert mean >= (random[:, None] != random[None]).sum(-1).mean() - 1e-9


def test_jigsaw_puzzle_label_indexes_the_max_hamming_set():
    t = JigsawPatches(grid=3, crop_size=63, patch_size=16, num_permutations=100,
                      permutation_method='max_hamming')
    assert np.array_equal(t.permutations,
                          generate_permutation_set(100, seed=0, method='max_hamming'))
    np.random.seed(3)
    out = t(dict(img=np.zeros((28, 28, 3), np.uint8)))
    assert 0 <= out['jigsaw_label'] < 100
    assert np.array_equal(out['jigsaw_perm'], t.permutations[out['jigsaw_label']])
