"""Jigsaw permutation sets: Noroozi & Favaro's max-average algorithm (VISSL's ``max_avg``), the
greedy max-minimum variant (VISSL's ``max_min``) and the deprecated name of the latter."""
import itertools

import numpy as np
import pytest

from mmssl_ext.datasets.transforms import JigsawPatches, generate_permutation_set


def _pairwise(perms):
    """Mean and minimum Hamming distance over all pairs of rows."""
    d = (perms[:, None] != perms[None]).sum(-1)
    upper = d[np.triu_indices(len(perms), 1)]
    return upper.mean(), upper.min()


def _vissl_max_avg(num, tiles, first_row):
    """VISSL's extra_scripts/generate_jigsaw_permutations.py, --method max_avg (Noroozi & Favaro,
    Algorithm 1), transcribed: the candidates in itertools order, the chosen one deleted, the next
    one the argmax of the mean Hamming distance to the chosen set; seeded with ``first_row``."""
    all_perms = np.array(list(itertools.permutations(range(tiles))))
    j = int(np.flatnonzero((all_perms == first_row).all(1))[0])
    selected = None
    for _ in range(num):
        row = all_perms[j].reshape(1, -1)
        selected = row if selected is None else np.concatenate([selected, row], axis=0)
        all_perms = np.delete(all_perms, j, axis=0)
        dist = (selected[:, None, :] != all_perms[None]).mean(-1)  # cdist(..., 'hamming')
        j = int(dist.mean(axis=0).argmax())
    return selected


@pytest.mark.parametrize('num,grid', [(6, 3), (23, 2), (12, 2)])
def test_max_avg_is_the_reference_algorithm(num, grid):
    perms = generate_permutation_set(num, seed=5, method='max_avg_hamming', grid=grid)
    expected = _vissl_max_avg(num, grid * grid, perms[0])
    np.testing.assert_array_equal(perms, expected)


def test_max_min_is_greedy_in_the_minimum_distance():
    perms = generate_permutation_set(12, seed=0, method='max_min_hamming')
    all_perms = np.array(list(itertools.permutations(range(9))))
    for i in range(1, len(perms)):
        to_chosen = (all_perms[:, None] != perms[None, :i]).sum(-1).min(1)
        assert (perms[i] != perms[:i]).sum(-1).min() == to_chosen.max()


def test_each_method_optimises_its_own_criterion():
    """max-avg spreads the set most on average, max-min keeps the closest pair farthest apart."""
    avg = _pairwise(generate_permutation_set(100, seed=0, method='max_avg_hamming'))
    min_ = _pairwise(generate_permutation_set(100, seed=0, method='max_min_hamming'))
    rand = _pairwise(generate_permutation_set(100, seed=0, method='random'))
    assert avg[0] > min_[0] > rand[0]
    assert min_[1] > max(avg[1], rand[1])


@pytest.mark.parametrize('method', ['max_avg_hamming', 'max_min_hamming'])
def test_sets_are_distinct_permutations_and_seeded(method):
    perms = generate_permutation_set(200, seed=1, method=method)
    assert perms.shape == (200, 9) and perms.dtype == np.int64
    assert (np.sort(perms, axis=1) == np.arange(9)).all()
    assert len({row.tobytes() for row in perms}) == 200
    np.testing.assert_array_equal(generate_permutation_set(200, seed=1, method=method), perms)
    assert not np.array_equal(generate_permutation_set(200, seed=2, method=method), perms)


def test_max_hamming_is_a_deprecated_name_of_max_min():
    with pytest.warns(DeprecationWarning, match='max_min_hamming'):
        old = generate_permutation_set(50, seed=0, method='max_hamming')
    np.testing.assert_array_equal(old, generate_permutation_set(50, seed=0,
                                                                method='max_min_hamming'))


def test_jigsaw_patches_uses_the_named_method():
    t = JigsawPatches(grid=3, crop_size=63, patch_size=16, num_permutations=100,
                      permutation_method='max_avg_hamming')
    np.testing.assert_array_equal(
        t.permutations, generate_permutation_set(100, seed=0, method='max_avg_hamming'))
    with pytest.raises(ValueError, match='max_avg_hamming'):
        generate_permutation_set(10, method='max_average')
