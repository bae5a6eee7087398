"""MemoryBank: EMA update, normalisation, sampling, checkpoint round trip, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mmssl_ext  # noqa: F401  (registration)
from mmssl_ext.models.memories import MemoryBank
from mmssl_ext.registry import MODELS


def _unit_norm(t: torch.Tensor) -> bool:
    return torch.allclose(t.norm(dim=1), torch.ones(t.shape[0], dtype=t.dtype), atol=1e-5)


def _ema_reference(old: np.ndarray, f: np.ndarray, mu: float) -> np.ndarray:
    """Hand computation of normalize(mu * m + (1 - mu) * normalize(f)) for one row."""
    f = f / np.sqrt((f ** 2).sum())
    new = mu * old + (1 - mu) * f
    return new / np.sqrt((new ** 2).sum())


def test_init_buffer_unit_norm_and_seeded():
    torch.manual_seed(0)
    bank = MemoryBank(length=50, feat_dim=16, num_negatives=10)
    assert bank.feats.shape == (50, 16)
    assert _unit_norm(bank.feats)
    assert 'feats' in bank.state_dict()
    torch.manual_seed(0)
    assert torch.equal(MemoryBank(length=50, feat_dim=16, num_negatives=10).feats, bank.feats)
    torch.manual_seed(1)
    assert not torch.equal(MemoryBank(length=50, feat_dim=16, num_negatives=10).feats, bank.feats)


def test_defaults_and_registry():
    bank = MODELS.build(dict(type='MemoryBank', length=40000))
    assert isinstance(bank, MemoryBank)
    assert (bank.feat_dim, bank.momentum, bank.num_negatives, bank.sampling) == (
        128, 0.5, 32000, 'shared')


def test_get_returns_rows_as_copy():
    bank = MemoryBank(length=10, feat_dim=4, num_negatives=3)
    idx = torch.tensor([7, 2, 7])
    rows = bank.get(idx)
    assert torch.equal(rows, bank.feats[[7, 2, 7]])
    rows.zero_()
    assert _unit_norm(bank.feats)


@pytest.mark.parametrize('momentum', [0.5, 0.9, 0.0, 1.0])
def test_ema_update_matches_hand_computation(momentum):
    torch.manual_seed(3)
    bank = MemoryBank(length=12, feat_dim=5, momentum=momentum, num_negatives=4)
    before = bank.feats.double().numpy().copy()
    idx = torch.tensor([4, 0, 9])
    f = torch.randn(3, 5) * 3.0  # not normalised: the bank normalises
    bank.update(idx, f)
    after = bank.feats.double().numpy()
    for j, i in enumerate(idx.tolist()):
        expected = _ema_reference(before[i], f[j].double().numpy(), momentum)
        np.testing.assert_allclose(after[i], expected, rtol=0, atol=1e-6)
    untouched = [i for i in range(12) if i not in idx.tolist()]
    np.testing.assert_array_equal(after[untouched], before[untouched])


def test_update_takes_no_grad_and_detaches():
    bank = MemoryBank(length=8, feat_dim=4, num_negatives=3)
    f = torch.randn(2, 4, requires_grad=True)
    bank.update(torch.tensor([1, 2]), f * 2)
    assert not bank.feats.requires_grad
    assert bank.feats.grad_fn is None


def test_duplicate_indices_average_then_one_step_order_independent():
    torch.manual_seed(5)
    bank = MemoryBank(length=10, feat_dim=6, momentum=0.5, num_negatives=3)
    snapshot = {k: v.clone() for k, v in bank.state_dict().items()}
    before = bank.feats.double().numpy().copy()
    idx = torch.tensor([3, 1, 3, 3, 8])
    f = torch.randn(5, 6)
    bank.update(idx, f)
    fn = F.normalize(f.double(), dim=1).numpy()
    mean3 = (fn[0] + fn[2] + fn[3]) / 3
    new3 = 0.5 * before[3] + 0.5 * mean3
    np.testing.assert_allclose(bank.feats[3].double().numpy(), new3 / np.linalg.norm(new3),
                               atol=1e-6)
    np.testing.assert_allclose(bank.feats[1].double().numpy(),
                               _ema_reference(before[1], f[1].double().numpy(), 0.5), atol=1e-6)
    # another order of the same occurrences gives the same bank
    other = MemoryBank(length=10, feat_dim=6, momentum=0.5, num_negatives=3)
    other.load_state_dict(snapshot)
    perm = torch.tensor([4, 3, 1, 0, 2])
    other.update(idx[perm], f[perm])
    assert torch.allclose(other.feats, bank.feats, atol=1e-6)


def test_rows_stay_unit_norm_after_many_updates():
    torch.manual_seed(0)
    bank = MemoryBank(length=30, feat_dim=8, momentum=0.5, num_negatives=5)
    for _ in range(50):
        idx = torch.randint(0, 30, (7,))
        bank.update(idx, torch.randn(7, 8) * torch.rand(7, 1) * 10)
        assert _unit_norm(bank.feats)


def test_shared_sampling_shape_range_rows_and_exclusion():
    torch.manual_seed(0)
    bank = MemoryBank(length=10, feat_dim=4, num_negatives=6, sampling='shared')
    idx = torch.tensor([2, 7, 2])
    seen = set()
    for _ in range(300):
        negs, neg_idx = bank.sample_negatives(idx, return_indices=True)
        assert negs.shape == (6, 4) and neg_idx.shape == (6,)
        assert neg_idx.dtype == torch.long
        assert int(neg_idx.min()) >= 0 and int(neg_idx.max()) < 10
        assert torch.equal(negs, bank.feats[neg_idx])
        seen.update(neg_idx.tolist())
    # shared mode excludes the batch's own indices and nothing else
    assert seen == set(range(10)) - {2, 7}
    assert bank.sample_negatives(idx).shape == (6, 4)


def test_shared_sampling_is_uniform_over_allowed_indices():
    torch.manual_seed(1)
    bank = MemoryBank(length=8, feat_dim=2, num_negatives=7)
    idx = torch.tensor([0, 5, 6])
    counts = torch.bincount(
        torch.cat([bank.sample_indices(idx) for _ in range(2000)]), minlength=8).float()
    assert counts[[0, 5, 6]].sum() == 0
    allowed = counts[[1, 2, 3, 4, 7]]
    expected = 2000 * 7 / 5
    assert torch.all((allowed - expected).abs() < 0.1 * expected), allowed


def test_per_sample_sampling_never_own_index_and_covers_all_others():
    torch.manual_seed(0)
    length = 6
    bank = MemoryBank(length=length, feat_dim=3, num_negatives=5, sampling='per_sample')
    idx = torch.tensor([0, 3, 5, 3])
    seen = [set() for _ in range(len(idx))]
    for _ in range(200):
        negs, neg_idx = bank.sample_negatives(idx, return_indices=True)
        assert negs.shape == (4, 5, 3) and neg_idx.shape == (4, 5)
        assert int(neg_idx.min()) >= 0 and int(neg_idx.max()) < length
        assert not bool((neg_idx == idx.unsqueeze(1)).any())
        assert torch.equal(negs, bank.feats[neg_idx])
        for b in range(len(idx)):
            seen[b].update(neg_idx[b].tolist())
    for b, own in enumerate(idx.tolist()):
        # every other index appears, other samples of the batch included
        assert seen[b] == set(range(length)) - {own}


def test_sampling_reproducible_under_manual_seed():
    for mode in ('shared', 'per_sample'):
        bank = MemoryBank(length=100, feat_dim=4, num_negatives=20, sampling=mode)
        idx = torch.tensor([1, 50, 99])
        torch.manual_seed(42)
        a = bank.sample_indices(idx)
        torch.manual_seed(42)
        b = bank.sample_indices(idx)
        assert torch.equal(a, b)


@pytest.mark.parametrize('mode', ['shared', 'per_sample'])
def test_negative_similarities(mode):
    torch.manual_seed(0)
    bank = MemoryBank(length=40, feat_dim=8, num_negatives=9, sampling=mode)
    q = F.normalize(torch.randn(5, 8), dim=1).requires_grad_()
    idx = torch.tensor([0, 1, 2, 3, 39])
    sims, neg_idx = bank.negative_similarities(q, idx, return_indices=True)
    assert sims.shape == (5, 9)
    rows = bank.feats[neg_idx]
    expected = q @ rows.t() if mode == 'shared' else (rows * q.unsqueeze(1)).sum(-1)
    assert torch.allclose(sims, expected, atol=1e-6)
    sims.sum().backward()
    assert q.grad is not None and bank.feats.grad is None
    with pytest.raises(ValueError, match='queries'):
        bank.negative_similarities(q[:3], idx)


def test_state_dict_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    bank = MemoryBank(length=25, feat_dim=6, num_negatives=4)
    bank.update(torch.tensor([1, 4, 4, 20]), torch.randn(4, 6))
    path = tmp_path / 'bank.pth'
    torch.save(bank.state_dict(), path)
    torch.manual_seed(123)
    fresh = MemoryBank(length=25, feat_dim=6, num_negatives=4)
    assert not torch.equal(fresh.feats, bank.feats)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(fresh.feats, bank.feats)
    # a bank of another length refuses the checkpoint
    with pytest.raises(RuntimeError, match='size mismatch'):
        MemoryBank(length=26, feat_dim=6, num_negatives=4).load_state_dict(
            torch.load(path, weights_only=True))


def test_index_errors_name_index_and_length():
    bank = MemoryBank(length=10, feat_dim=4, num_negatives=3)
    snapshot = bank.feats.clone()
    with pytest.raises(IndexError,
                       match='memory bank of length 10 is smaller than the dataset index 12'):
        bank.get(torch.tensor([1, 12, 3]))
    with pytest.raises(IndexError, match='dataset index 10'):
        bank.update(torch.tensor([10]), torch.randn(1, 4))
    with pytest.raises(IndexError, match=r'-1.*length 10'):
        bank.get(torch.tensor([-1]))
    with pytest.raises(IndexError, match='dataset index 11'):
        bank.sample_negatives(torch.tensor([11]))
    with pytest.raises(TypeError):
        bank.get(torch.tensor([1.0]))
    assert torch.equal(bank.feats, snapshot)  # nothing was written by the failed update


def test_value_errors():
    with pytest.raises(ValueError, match='num_negatives'):
        MemoryBank(length=10, feat_dim=4, num_negatives=10)
    MemoryBank(length=10, feat_dim=4, num_negatives=9)  # length - 1 is fine
    with pytest.raises(ValueError, match='sampling'):
        MemoryBank(length=10, feat_dim=4, num_negatives=3, sampling='queue')
    with pytest.raises(ValueError, match='momentum'):
        MemoryBank(length=10, feat_dim=4, num_negatives=3, momentum=1.5)
    bank = MemoryBank(length=10, feat_dim=4, num_negatives=3)
    with pytest.raises(ValueError, match=r'\(B, 4\)'):
        bank.update(torch.tensor([1, 2]), torch.randn(2, 5))
    with pytest.raises(ValueError, match='2 features for 3 indices'):
        bank.update(torch.tensor([1, 2, 3]), torch.randn(2, 4))
    with pytest.raises(ValueError, match='covers all'):
        MemoryBank(length=3, feat_dim=2, num_negatives=2).sample_negatives(torch.arange(3))
