"""Permutation sets for jigsaw pretext tasks (Noroozi & Favaro 2016; PIRL, Misra & van der Maaten
2020).

A jigsaw transform shuffles the ``grid x grid`` tiles of an image by one permutation drawn from a
fixed *permutation set*; a jigsaw classifier predicts the index of that permutation, PIRL only
needs the set to be varied.  :func:`generate_permutation_set` builds such a set, deterministically
from a seed, by one of two methods:

* ``'random'``: ``num`` distinct permutations drawn uniformly without replacement (for a 3x3 grid
  from the enumerated 9! = 362880 permutations, so ``num == 9!`` is every permutation, shuffled);
* ``'max_hamming'``: the greedy maximal-Hamming-distance selection of Noroozi & Favaro: start from
  a random permutation, then repeatedly add the candidate whose *minimum* Hamming distance to the
  permutations chosen so far is largest (ties broken by the seeded generator).  A running array of
  minimum distances over all candidates makes this ``O(num * 9!)``: practical up to ~2000.

Example:
    >>> perms = generate_permutation_set(100, seed=0, method='max_hamming')
    >>> perms.shape, perms.dtype
    ((100, 9), dtype('int64'))
"""
import math
from functools import lru_cache

import numpy as np

#: number of permutations of a 3x3 grid (9!)
MAX_PERMUTATIONS = math.factorial(9)
#: grids with at most this many tiles are enumerated completely (9! rows of 9 bytes: ~3 MB)
_MAX_ENUMERATED_TILES = 9
#: for larger grids ``'max_hamming'`` selects from this many distinct random candidates
_CANDIDATE_POOL = 100_000
METHODS = ('random', 'max_hamming')


@lru_cache(maxsize=4)
def _all_permutations(n: int) -> np.ndarray:
    """All ``n!`` permutations of ``range(n)`` in lexicographic order, ``(n!, n)`` uint8.

    Built recursively with numpy (the permutations starting with ``f`` are ``f`` followed by the
    permutations of ``n - 1`` elements with every value ``>= f`` shifted up by one), which is much
    faster than materialising ``itertools.permutations`` tuples.  Cached; treat as read-only.
    """
    perms = np.zeros((1, 0), dtype=np.uint8)
    for k in range(1, n + 1):
        # perms: all permutations of range(k - 1); extend to range(k)
        blocks = []
        for first in range(k):
            rest = perms + (perms >= first).astype(np.uint8)
            head = np.full((len(perms), 1), first, dtype=np.uint8)
            blocks.append(np.concatenate([head, rest], axis=1))
        perms = np.concatenate(blocks, axis=0)
    perms.setflags(write=False)
    return perms


def _random_distinct_permutations(rng: np.random.Generator, num: int, n: int) -> np.ndarray:
    """``num`` distinct uniformly random permutations of ``range(n)`` (for ``n!`` >> ``num``)."""
    rows, seen = [], set()
    while len(rows) < num:
        batch = np.argsort(rng.random((num - len(rows), n)), axis=1).astype(np.uint8)
        for row in batch:
            key = row.tobytes()
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return np.stack(rows)


def _greedy_max_hamming(rng: np.random.Generator, candidates: np.ndarray,
                        num: int) -> np.ndarray:
    """Greedy max-min Hamming selection of ``num`` rows of ``candidates`` (indices returned)."""
    cols = np.ascontiguousarray(candidates.T)  # (n, M): one contiguous array per position
    n, total = cols.shape
    chosen = np.empty(num, dtype=np.int64)
    # running minimum distance of every candidate to the chosen set (n + 1 = "no row chosen yet")
    min_dist = np.full(total, n + 1, dtype=np.uint8)
    dist = np.empty(total, dtype=np.uint8)
    neq = np.empty(total, dtype=bool)
    chosen[0] = rng.integers(total)
    for i in range(num):
        if i > 0:
            best = np.flatnonzero(min_dist == min_dist.max())
            chosen[i] = best[rng.integers(len(best))]
        row = candidates[chosen[i]]
        dist.fill(0)
        for k in range(n):
            np.not_equal(cols[k], row[k], out=neq)
            dist += neq
        np.minimum(min_dist, dist, out=min_dist)  # the chosen row itself drops to 0
    return chosen


def generate_permutation_set(num: int, seed: int = 0, method: str = 'random',
                             grid: int = 3) -> np.ndarray:
    """A set of ``num`` distinct permutations of the ``grid * grid`` jigsaw tiles.

    Args:
        num (int): Number of permutations, ``1 <= num <= (grid * grid)!`` (9! = 362880 for 3x3).
        seed (int): Seed of the private generator (``np.random.default_rng(seed)``); the global
            numpy RNG is neither used nor advanced.  Same arguments -> same set.
        method (str): ``'random'`` (uniform without replacement) or ``'max_hamming'`` (greedy
            maximal minimum Hamming distance, Noroozi & Favaro 2016; ``O(num * 9!)``, meant for
            ``num`` up to a few thousand).  For grids larger than 3x3, ``'max_hamming'`` selects
            from a seeded pool of 100000 distinct random permutations instead of all of them.
        grid (int): Tiles per side. Defaults to 3.

    Returns:
        np.ndarray: ``(num, grid * grid)`` int64; row ``j`` is permutation ``j`` of
        ``range(grid * grid)``.
    """
    if method not in METHODS:
        raise ValueError(f'unknown permutation method {method!r}; expected one of {METHODS}')
    if not isinstance(grid, (int, np.integer)) or grid < 1:
        raise ValueError(f'grid must be a positive int, got {grid!r}')
    n = int(grid) * int(grid)
    total = math.factorial(n)
    if not isinstance(num, (int, np.integer)) or num < 1 or num > total:
        raise ValueError(f'num must be an int in [1, {total}] ({n}! permutations of a '
                         f'{grid}x{grid} grid), got num={num!r}')
    num = int(num)
    rng = np.random.default_rng(seed)

    if n <= _MAX_ENUMERATED_TILES:
        candidates = _all_permutations(n)
    elif method == 'random':
        return _random_distinct_permutations(rng, num, n).astype(np.int64)
    else:
        candidates = _random_distinct_permutations(rng, max(_CANDIDATE_POOL, num), n)

    if method == 'random':
        idx = rng.choice(len(candidates), size=num, replace=False)
    else:
        idx = _greedy_max_hamming(rng, candidates, num)
    return candidates[idx].astype(np.int64)
