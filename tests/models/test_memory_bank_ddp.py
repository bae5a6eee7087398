"""MemoryBank and NCELoss under DDP: 2 CPU processes on gloo keep identical state."""
import os

import torch
import torch.multiprocessing as mp

import mmssl_ext  # noqa: F401  (registration)
from mmssl_ext.models.losses import NCELoss
from mmssl_ext.models.memories import MemoryBank
from tests.helpers import free_port, gloo_group

WORLD_SIZE = 2
LENGTH, DIM, STEPS, SEED, NUM_DATA = 20, 8, 5, 0, 20


def _batches():
    """Per step, a list of (idx, feats) per rank: different sizes, overlapping indices."""
    g = torch.Generator().manual_seed(123)
    steps = []
    for step in range(STEPS):
        per_rank = []
        for rank in range(WORLD_SIZE):
            n = 3 + step % 2 if rank == 0 else 5  # ranks hold different batch sizes
            idx = torch.randint(0, LENGTH, (n,), generator=g)
            per_rank.append((idx, torch.randn(n, DIM, generator=g)))
        # an index shared by both ranks, and a duplicate inside rank 1 (DistributedSampler padding)
        per_rank[1][0][0] = per_rank[0][0][0]
        per_rank[1][0][1] = per_rank[1][0][2]
        steps.append(per_rank)
    return steps


def _loss_inputs(rank: int):
    g = torch.Generator().manual_seed(1000 + rank)
    b = 3 if rank == 0 else 6
    return torch.rand(b, generator=g) * 2 - 1, torch.rand(b, 7, generator=g) * 2 - 1


def _worker(rank: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, port, WORLD_SIZE):
        torch.manual_seed(SEED)
        bank = MemoryBank(length=LENGTH, feat_dim=DIM, num_negatives=5)
        init = bank.feats.clone()
        for per_rank in _batches():
            idx, feats = per_rank[rank]
            bank.update(idx, feats)
        loss_fn = NCELoss(temperature=0.07, num_data=NUM_DATA)
        loss_fn(*_loss_inputs(rank))
        torch.save(dict(init=init, feats=bank.feats.clone(), z=loss_fn.z.clone()),
                   os.path.join(out_dir, f'rank{rank}.pth'))


def test_bank_and_nce_z_identical_across_ranks_and_equal_to_single_process(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth', weights_only=True)
              for r in range(WORLD_SIZE))

    # same seed -> identical initial banks; after updates with different data: still identical
    assert torch.equal(r0['init'], r1['init'])
    assert not torch.equal(r0['feats'], r0['init'])
    assert torch.equal(r0['feats'], r1['feats'])

    # ... and equal to one process updating with the concatenated batches (rank 0 first)
    torch.manual_seed(SEED)
    single = MemoryBank(length=LENGTH, feat_dim=DIM, num_negatives=5)
    assert torch.equal(single.feats, r0['init'])
    for per_rank in _batches():
        single.update(torch.cat([p[0] for p in per_rank]), torch.cat([p[1] for p in per_rank]))
    assert torch.allclose(single.feats, r0['feats'], rtol=0, atol=1e-6)
    # without the gather a rank would only see its own batches
    torch.manual_seed(SEED)
    local = MemoryBank(length=LENGTH, feat_dim=DIM, num_negatives=5)
    for per_rank in _batches():
        local.update(*per_rank[0])
    assert not torch.allclose(local.feats, r0['feats'], atol=1e-3)

    # NCE's Z: estimated from the entries of BOTH ranks, the same on each
    assert torch.equal(r0['z'], r1['z'])
    entries = torch.cat([torch.cat([p, n.flatten()]) for p, n in map(_loss_inputs, range(2))])
    expected_z = float(torch.exp(entries.double() / 0.07).mean()) * NUM_DATA
    assert abs(float(r0['z']) - expected_z) <= 1e-5 * expected_z


def _seeded_worker(rank: int, port: int, out_dir: str) -> None:
    """Seeded as mmengine's Runner seeds: per rank (``diff_rank_seed=True``), then all alike;
    negatives drawn for the same indices on every rank, so only the seeds can tell them apart."""
    from mmengine.runner import set_random_seed
    fixed = torch.tensor([0, 1, 2])
    out = {}
    with gloo_group(rank, port, WORLD_SIZE):
        for name, diff_rank_seed in (('per_rank', True), ('same', False)):
            set_random_seed(SEED, diff_rank_seed=diff_rank_seed)
            for sampling in ('shared', 'per_sample'):
                bank = MemoryBank(length=LENGTH, feat_dim=DIM, num_negatives=10,
                                  sampling=sampling)
                out[f'{name}_{sampling}_init'] = bank.feats.clone()
                out[f'{name}_{sampling}_draw'] = bank.sample_indices(fixed)
                bank.update(*_batches()[0][rank])
                out[f'{name}_{sampling}_feats'] = bank.feats.clone()
                out[f'{name}_{sampling}_next_draw'] = bank.sample_indices(fixed)
        torch.save(out, os.path.join(out_dir, f'seeded{rank}.pth'))


def test_differently_seeded_ranks_draw_different_negatives_from_one_bank(tmp_path):
    """With a seed per rank (the ImageNet configs' ``randomness.diff_rank_seed``) the ranks draw
    different negatives and still share one bank from the first update on; with one seed for
    all ranks every rank draws the same negatives."""
    mp.spawn(_seeded_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    r0, r1 = (torch.load(tmp_path / f'seeded{r}.pth', weights_only=True)
              for r in range(WORLD_SIZE))
    for sampling in ('shared', 'per_sample'):
        key = f'per_rank_{sampling}'
        assert not torch.equal(r0[f'{key}_init'], r1[f'{key}_init'])  # own random banks ...
        assert torch.equal(r0[f'{key}_feats'], r1[f'{key}_feats'])  # ... one after the update
        assert not torch.equal(r0[f'{key}_draw'], r1[f'{key}_draw'])
        assert not torch.equal(r0[f'{key}_next_draw'], r1[f'{key}_next_draw'])
        key = f'same_{sampling}'
        assert torch.equal(r0[f'{key}_init'], r1[f'{key}_init'])
        assert torch.equal(r0[f'{key}_draw'], r1[f'{key}_draw'])
        assert torch.equal(r0[f'{key}_next_draw'], r1[f'{key}_next_draw'])
