"""Memory-bank step at ImageNet scale: a 1.28M x 128 bank, 32000 negatives per sample.

One step is what PIRL / NPID do with the bank per iteration: draw the negatives, the negative
similarities of the batch's queries (forward and backward into the queries), the positives
(``get``) and the EMA update of the batch's entries.  Timed, in one run and on the same bank:

* ``shared`` (our default, :class:`mmssl_ext.models.MemoryBank`): one set of K negatives for the
  whole batch, one ``(B, D) x (D, K)`` matmul;
* ``per_sample`` (our VISSL-form option): ``B x K`` negatives, a batched matmul;
* a reference written here in the style of the original NPID code: ``torch.multinomial`` over
  uniform weights for ``B x K`` indices, ``index_select``, ``bmm``, and an ``index_copy_``
  update.

Reported: ms per step, the ratio reference / ours and the bytes of negatives gathered per step
(the step's dominant transient allocation), plus the bank's resident size.

    .venv/bin/python -m benchmarks.memory_bank [--length 1281167 --negatives 32000 --batch 32]

Writes ``benchmarks/results/memory_bank_n<length>-d<dim>-neg<negatives>-b<batch>_cpu.json`` and
``.md`` (``--tag`` names them instead).
"""
import argparse

import torch
import torch.nn.functional as F

from benchmarks import report as rep
from benchmarks.measure import time_per_call
from mmssl_ext.models import MemoryBank


def ours_step(bank: MemoryBank, query: torch.Tensor, idx: torch.Tensor) -> None:
    q = query.clone().requires_grad_()
    neg = bank.negative_similarities(q, idx)
    pos = (bank.get(idx) * q).sum(dim=1, keepdim=True)
    torch.cat([pos, neg], dim=1).logsumexp(dim=1).sum().backward()
    bank.update(idx, q.detach())


def reference_step(feats: torch.Tensor, query: torch.Tensor, idx: torch.Tensor, k: int,
                   momentum: float = 0.5) -> None:
    """NPID-style: multinomial sampling over uniform weights, per-sample negatives."""
    q = query.clone().requires_grad_()
    weights = torch.ones(feats.shape[0])
    neg_idx = torch.multinomial(weights, q.shape[0] * k, replacement=True).view(q.shape[0], k)
    negs = torch.index_select(feats, 0, neg_idx.view(-1)).view(q.shape[0], k, -1)
    neg = torch.bmm(negs, q.unsqueeze(2)).squeeze(2)
    pos = (torch.index_select(feats, 0, idx) * q).sum(dim=1, keepdim=True)
    torch.cat([pos, neg], dim=1).logsumexp(dim=1).sum().backward()
    with torch.no_grad():
        new = F.normalize(momentum * feats[idx] + (1 - momentum) * q.detach(), dim=1)
        feats.index_copy_(0, idx, new)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m benchmarks.memory_bank',
                                description=__doc__.splitlines()[0])
    p.add_argument('--length', type=int, default=1281167)
    p.add_argument('--dim', type=int, default=128)
    p.add_argument('--negatives', type=int, default=32000)
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--tag', help='results: benchmarks/results/memory_bank_<tag>.* (default: '
                   'n<length>-d<dim>-neg<negatives>-b<batch>_cpu)')
    p.add_argument('--out', default=rep.RESULTS)
    return p.parse_args(argv)


def result_name(a: argparse.Namespace) -> str:
    """``n<length>-d<dim>-neg<negatives>-b<batch>_cpu``: what the results file of ``a`` holds."""
    return rep.result_name(f'n{a.length}-d{a.dim}-neg{a.negatives}-b{a.batch}', 'cpu')


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    query = F.normalize(torch.randn(a.batch, a.dim), dim=1)
    idx = torch.randperm(a.length)[:a.batch]
    rows = {}
    gathered = {'shared': a.negatives, 'per_sample': a.batch * a.negatives}
    for sampling in ('shared', 'per_sample'):
        bank = MemoryBank(a.length, a.dim, num_negatives=a.negatives, sampling=sampling)
        seconds = time_per_call(lambda: ours_step(bank, query, idx), a.steps)
        rows[f'ours, sampling={sampling!r}'] = dict(
            ms_per_step=round(seconds * 1000, 2),
            negatives_gathered_mib=round(gathered[sampling] * a.dim * 4 / 2**20, 1))
        resident = bank.feats.numel() * bank.feats.element_size() / 2**20
        bank = None  # freed before the next bank is built
    feats = F.normalize(torch.randn(a.length, a.dim), dim=1)
    seconds = time_per_call(lambda: reference_step(feats, query, idx, a.negatives), a.steps)
    ref = 'reference: NPID-style multinomial + index_select, per sample'
    rows[ref] = dict(ms_per_step=round(seconds * 1000, 2),
                     negatives_gathered_mib=round(a.batch * a.negatives * a.dim * 4 / 2**20, 1))
    for row in rows.values():
        row['reference_over_this'] = round(rows[ref]['ms_per_step'] / row['ms_per_step'], 2)
    report = rep.new_report('benchmarks.memory_bank', argv, machine=rep.machine(a.threads),
                            setting=dict(length=a.length, dim=a.dim, negatives=a.negatives,
                                         batch=a.batch, steps=a.steps, threads=a.threads),
                            bank_resident_mib=round(resident, 1), rows=rows)
    lines = [f'## Memory bank, {a.length:,} x {a.dim}, {a.negatives} negatives, batch {a.batch}',
             '', *rep.provenance(report),
             f'Bank resident size: {resident:.0f} MiB (float32).', '',
             '| implementation | ms / step | reference / this | negatives gathered (MiB) |',
             '|---|---:|---:|---:|']
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ms_per_step']:.1f} | {r['reference_over_this']:.2f} | "
                     f"{r['negatives_gathered_mib']:.1f} |")
    md = '\n'.join(lines) + '\n'
    print(md)
    print('results:', rep.write(report, md, 'memory_bank', a.tag or result_name(a), a.out))
    return report


if __name__ == '__main__':
    main()
