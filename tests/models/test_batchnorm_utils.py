import pytest
import torch
import torch.nn as nn

from mmssl_ext.models.utils import bn_running_stats_frozen


def _net():
    torch.manual_seed(0)
    untracked = nn.BatchNorm1d(4, track_running_stats=False)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), untracked).train()


def test_running_stats_untouched_inside_and_updated_outside():
    net = _net()
    x = torch.randn(16, 3) * 5 + 2
    bn = net[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    with bn_running_stats_frozen(net):
        out = net(x)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    # batch statistics were used: the output of the tracked layer is standardised per feature
    h = net[1](net[0](x))
    assert torch.allclose(h.mean(0), torch.zeros(4), atol=1e-5)
    assert out.shape == (16, 4)
    net(x)  # outside the block the statistics move again
    assert not torch.equal(bn.running_mean, before[0])
    assert int(bn.num_batches_tracked) == before[2] + 2


def test_restored_after_an_exception_and_untracked_layers_left_alone():
    net = _net()
    with pytest.raises(RuntimeError):
        with bn_running_stats_frozen(net):
            assert not net[1].track_running_stats
            raise RuntimeError('boom')
    assert net[1].track_running_stats
    assert not net[3].track_running_stats  # it did not track before: it must not start to
