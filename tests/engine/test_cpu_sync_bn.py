"""CPUSyncBatchNorm: torch's SyncBatchNorm semantics on gloo CPU processes.

2 spawned ranks with uneven batches (3 and 5 samples) run one step of a small conv net whose
norms are ``nn.SyncBatchNorm`` (2d and 1d) through ``MMSSLDistributedDataParallel``; one process
runs the same net with ``nn.BatchNorm`` on the 8 samples.  The outputs, the all-reduced parameter
gradients and the running statistics must match; the control wraps plain BatchNorm (per-rank
statistics), whose outputs must not.
"""
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from mmssl_ext.engine.dist import CPUSyncBatchNorm
from tests.helpers import free_port, gloo_group

SIZES = (3, 5)  # per-rank batch sizes
TOL = dict(rtol=1e-4, atol=1e-5)  # float32 sums in another order: measured <= 4e-6 apart


def _net(norm2d, norm1d):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), norm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 6), norm1d(6))
    with torch.no_grad():  # non-trivial affine parameters
        for m in net:
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net


def _data():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(sum(SIZES), 3, 6, 6, generator=gen) * 2 + 1


def _loss(out, n_global, world_size):
    # DDP averages the ranks' gradients: each rank's share of the global sum, times world size
    return (out.sin() * out).sum() / n_global * world_size


def _step(net, x, n_global, world_size):
    out = net(x)
    _loss(out, n_global, world_size).backward()
    return out.detach()


def _worker(rank, port, out_dir, sync):
    from mmssl_ext.engine.dist import MMSSLDistributedDataParallel
    with gloo_group(rank, port, len(SIZES)):
        net = _net(nn.SyncBatchNorm if sync else nn.BatchNorm2d,
                   nn.SyncBatchNorm if sync else nn.BatchNorm1d)
        ddp = MMSSLDistributedDataParallel(net, broadcast_buffers=False)
        start = sum(SIZES[:rank])
        out = _step(ddp, _data()[start:start + SIZES[rank]], sum(SIZES), len(SIZES))
        torch.save(dict(out=out, grads={k: p.grad for k, p in net.named_parameters()},
                        state=net.state_dict(),
                        types=[type(m).__name__ for m in net]), f'{out_dir}/rank{rank}.pth')


def _run(tmp_path, sync):
    mp.spawn(_worker, args=(free_port(), str(tmp_path), sync), nprocs=len(SIZES), join=True)
    return [torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in range(len(SIZES))]


def test_ddp_sync_bn_on_cpu_equals_one_batchnorm_over_the_global_batch(tmp_path):
    ranks = _run(tmp_path, sync=True)
    assert ranks[0]['types'][1] == 'CPUSyncBatchNorm' and ranks[0]['types'][6] == \
        'CPUSyncBatchNorm'
    ref = _net(nn.BatchNorm2d, nn.BatchNorm1d)
    out = _step(ref, _data(), sum(SIZES), 1)
    torch.testing.assert_close(torch.cat([r['out'] for r in ranks]), out, **TOL)
    for rank in ranks:
        for k, p in ref.named_parameters():
            torch.testing.assert_close(rank['grads'][k], p.grad, **TOL, msg=lambda m: f'{k}: {m}')
        for k, v in ref.state_dict().items():  # running mean / unbiased var / batches tracked
            torch.testing.assert_close(rank['state'][k], v, **TOL, msg=lambda m: f'{k}: {m}')


def test_control_plain_batchnorm_normalises_per_rank(tmp_path):
    ranks = _run(tmp_path, sync=False)
    ref = _net(nn.BatchNorm2d, nn.BatchNorm1d)
    out = _step(ref, _data(), sum(SIZES), 1)
    assert not torch.allclose(torch.cat([r['out'] for r in ranks]), out, **TOL)


def test_convert_shares_parameters_and_is_plain_batchnorm_in_one_process():
    net = _net(nn.SyncBatchNorm, nn.SyncBatchNorm)
    params = {k: p for k, p in net.named_parameters()}
    net.eval()
    converted = CPUSyncBatchNorm.convert(net)
    assert converted is net and isinstance(net[1], CPUSyncBatchNorm)
    assert not net[1].training
    assert all(p is params[k] for k, p in net.named_parameters())
    net.train()
    ref = _net(nn.BatchNorm2d, nn.BatchNorm1d)
    x = _data()
    torch.testing.assert_close(net(x), ref(x), rtol=0, atol=0)  # no process group: BatchNorm
    torch.testing.assert_close(net.state_dict(), ref.state_dict(), rtol=0, atol=0)
