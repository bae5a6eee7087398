"""Permutation sets for jigsaw pretext tasks (Noroozi & Favaro 2016; PIRL, Misra & van der Maaten
2020).

A jigsaw transform shuffles the ``grid x grid`` tiles of an image by one permutation drawn from a
fixed *permutation set*; a jigsaw classifier predicts the index of that permutation, PIRL only
needs the set to be varied.  :func:`generate_permutation_set` builds such a set, deterministically
from a seed, by one of three methods:

* ``'random'``: ``num`` distinct permutations drawn uniformly without replacement (for a 3x3 grid
  from the enumerated 9! = 362880 permutations, so ``num == 9!`` is every permutation, shuffled);
* ``'max_avg_hamming'``: Noroozi & Favaro's Algorithm 1 ("maximal Hamming distance permutation
  set"), as VISSL's ``extra_scripts/generate_jigsaw_permutations.py --method max_avg`` implements
  it and as VISSL's jigsaw configs use it: start from a random permutation, then repeatedly add
  the candidate whose *average* (equivalently: total) Hamming distance to the permutations chosen
  so far is largest, ties to the first candidate in lexicographic order (``argmax``);
* ``'max_min_hamming'``: the greedy maximal-*minimum* variant (VISSL's ``--method max_min``):
  repeatedly add the candidate whose minimum Hamming distance to the chosen permutations is
  largest; ties are broken by the seeded generator (VISSL takes the first).  It maximises the
  worst case, the closest pair, where max-avg maximises the average.  ``'max_hamming'`` is its
  former name (deprecated alias).

The greedy methods keep one running array over all candidates, ``O(num * 9!)``: practical up to
a few thousand permutations.

Example:
    >>> perms = generate_permutation_set(100, seed=0, method='max_avg_hamming')
    >>> perms.shape, perms.dtype
    ((100, 9), dtype('int64'))
"""
import math
import warnings
from functools import lru_cache

import numpy as np

#: number of permutations of a 3x3 grid (9!)
MAX_PERMUTATIONS = math.factorial(9)
#: grids with at most this many tiles are enumerated completely (9! rows of 9 bytes: ~3 MB)
_MAX_ENUMERATED_TILES = 9
#: for larger grids the greedy methods select from this many distinct random candidates
_CANDIDATE_POOL = 100_000
METHODS = ('random', 'max_avg_hamming', 'max_min_hamming')
#: former method names, still accepted for one release (with a DeprecationWarning)
DEPRECATED_METHODS = {'max_hamming': 'max_min_hamming'}


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


def _hamming_to_all(cols: np.ndarray, row: np.ndarray, dist: np.ndarray,
                    neq: np.ndarray) -> np.ndarray:
    """Hamming distances of ``row`` to every candidate (``cols``: candidates transposed), into
    ``dist`` (uint8, reused); ``neq`` is a boolean work array of the same length."""
    dist.fill(0)
    for k in range(cols.shape[0]):
        np.not_equal(cols[k], row[k], out=neq)
        dist += neq
    return dist


def _greedy_max_min_hamming(rng: np.random.Generator, candidates: np.ndarray,
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
        dist = _hamming_to_all(cols, candidates[chosen[i]], dist, neq)
        np.minimum(min_dist, dist, out=min_dist)  # the chosen row itself drops to 0
    return chosen


def _greedy_max_avg_hamming(rng: np.random.Generator, candidates: np.ndarray,
                            num: int) -> np.ndarray:
    """Noroozi & Favaro's Algorithm 1 on ``candidates``: ``num`` row indices, each next row the
    unchosen candidate of largest total Hamming distance to the chosen rows (first on ties)."""
    cols = np.ascontiguousarray(candidates.T)
    n, total = cols.shape
    chosen = np.empty(num, dtype=np.int64)
    # running total distance of every candidate to the chosen set; chosen rows are set to -1
    total_dist = np.zeros(total, dtype=np.int64)
    dist = np.empty(total, dtype=np.uint8)
    neq = np.empty(total, dtype=bool)
    chosen[0] = rng.integers(total)
    for i in range(num):
        if i > 0:
            chosen[i] = int(np.argmax(total_dist))
        total_dist += _hamming_to_all(cols, candidates[chosen[i]], dist, neq)
        total_dist[chosen[:i + 1]] = -1
    return chosen


def generate_permutation_set(num: int, seed: int = 0, method: str = 'random',
                             grid: int = 3) -> np.ndarray:
    """A set of ``num`` distinct permutations of the ``grid * grid`` jigsaw tiles.

    Args:
        num (int): Number of permutations, ``1 <= num <= (grid * grid)!`` (9! = 362880 for 3x3).
        seed (int): Seed of the private generator (``np.random.default_rng(seed)``); the global
            numpy RNG is neither used nor advanced.  Same arguments -> same set.
        method (str): ``'random'`` (uniform without replacement), ``'max_avg_hamming'``
            (Noroozi & Favaro's algorithm, VISSL's ``max_avg``) or ``'max_min_hamming'`` (greedy
            maximal minimum distance, VISSL's ``max_min``); the greedy methods are
            ``O(num * 9!)``, meant for ``num`` up to a few thousand, and for grids larger than 3x3
            select from a seeded pool of 100000 distinct random permutations instead of all of
            them.  ``'max_hamming'``: deprecated name of ``'max_min_hamming'``.
        grid (int): Tiles per side. Defaults to 3.

    Returns:
        np.ndarray: ``(num, grid * grid)`` int64; row ``j`` is permutation ``j`` of
        ``range(grid * grid)``.
    """
    if method in DEPRECATED_METHODS:
        warnings.warn(f'permutation method {method!r} is deprecated; use '
                      f'{DEPRECATED_METHODS[method]!r} (the same algorithm)', DeprecationWarning,
                      stacklevel=2)
        method = DEPRECATED_METHODS[method]
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
    elif method == 'max_avg_hamming':
        idx = _greedy_max_avg_hamming(rng, candidates, num)
    else:
        idx = _greedy_max_min_hamming(rng, candidates, num)
    return candidates[idx].astype(np.int64)
