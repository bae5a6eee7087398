"""kNN evaluation of 60k x 10k features: our chunked torch and faiss searches against the naive
full-matrix search and scikit-learn's brute-force ``NearestNeighbors``, in one run.

Fashion-MNIST-sized features (60000 train x 10000 test, D=256 = the half-width ResNet-18's
pooled features, and D=512 with ``--dim 512``), random unit vectors, 10 random labels.  Timed:

* ``naive``: ``test @ train.T`` (the full 10000 x 60000 matrix, 2.2 GiB) then ``topk``;
* ``ours (torch)`` / ``ours (faiss)``: :func:`mmssl_ext.evaluation.knn.knn_neighbours`
  (1024-row chunks / faiss ``IndexFlatIP``), what ``tools/knn_eval.py`` and ``KNNEvalHook`` run;
* ``ours, full evaluation``: :func:`knn_evaluate` (the search with k=200 plus the weighted votes
  for k=20 and k=200), i.e. the whole evaluation after feature extraction;
* ``scikit-learn``: ``NearestNeighbors(algorithm='brute', metric='cosine')``.

Ratios are the reference's time over ours (> 1: ours faster); peak memory is each call's own
peak RSS minus the RSS before it (the peak is reset before every call).  Neighbour agreement
with the naive search is reported too (ties may order differently).

    .venv/bin/python -m benchmarks.knn_search [--dim 256] [--threads 2]

Writes ``benchmarks/results/knn_search_n<train>-q<test>-d<dim>-k<k>_cpu.json`` and ``.md``
(``--tag`` names them instead).
"""
import argparse
import time

import torch
import torch.nn.functional as F

from benchmarks import measure as mem
from benchmarks import report as rep
from mmssl_ext.evaluation.knn import knn_evaluate, knn_neighbours


def naive(train, test, k):
    s = test @ train.T  # the full N_test x N_train matrix
    return s.topk(k, dim=1)


def sklearn_search(train, test, k):
    from sklearn.neighbors import NearestNeighbors
    nn = NearestNeighbors(n_neighbors=k, algorithm='brute', metric='cosine').fit(train.numpy())
    dist, idx = nn.kneighbors(test.numpy())
    return torch.from_numpy(1 - dist), torch.from_numpy(idx)


def measure(fn, *args):
    """Seconds and peak-RSS growth (MiB) of one call."""
    with mem.peak_growth() as grown:
        t0 = time.perf_counter()
        out = fn(*args)
        seconds = time.perf_counter() - t0
    return seconds, grown['bytes'] / 2**20 if grown['bytes'] is not None else None, out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m benchmarks.knn_search',
                                description=__doc__.splitlines()[0])
    p.add_argument('--train', type=int, default=60000)
    p.add_argument('--test', type=int, default=10000)
    p.add_argument('--dim', type=int, default=256)
    p.add_argument('--k', type=int, default=200)
    p.add_argument('--chunk', type=int, default=1024)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--tag', help='results: benchmarks/results/knn_search_<tag>.* (default: '
                   'n<train>-q<test>-d<dim>-k<k>_cpu)')
    p.add_argument('--out', default=rep.RESULTS)
    return p.parse_args(argv)


def result_name(a: argparse.Namespace) -> str:
    """``n<train>-q<test>-d<dim>-k<k>_cpu``: what the results file of ``a`` holds."""
    return rep.result_name(f'n{a.train}-q{a.test}-d{a.dim}-k{a.k}', 'cpu')


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        import faiss
        faiss.omp_set_num_threads(a.threads)
    except ImportError:
        faiss = None
    g = torch.Generator().manual_seed(0)
    train = F.normalize(torch.randn(a.train, a.dim, generator=g), dim=1)
    test = F.normalize(torch.randn(a.test, a.dim, generator=g), dim=1)
    labels = torch.randint(0, 10, (a.train, ), generator=g)
    test_labels = torch.randint(0, 10, (a.test, ), generator=g)
    knn_neighbours(train[:2000], test[:100], 10, a.chunk, 'torch')  # warm-up
    rows = {}
    runs = [('ours (torch, chunked)', knn_neighbours, (train, test, a.k, a.chunk, 'torch')),
            ('ours, full evaluation (search + votes, k=20 and 200)', knn_evaluate,
             (train, labels, test, test_labels, (20, a.k), 0.07, (1, ), 10, a.chunk, 'auto'))]
    if faiss is not None:
        runs.insert(1, ('ours (faiss IndexFlatIP)', knn_neighbours,
                        (train, test, a.k, a.chunk, 'faiss')))
    try:
        import sklearn  # noqa: F401
        runs.append(('scikit-learn NearestNeighbors (brute, cosine)', sklearn_search,
                     (train, test, a.k)))
    except ImportError:
        pass
    runs.append(('naive full matrix + topk', naive, (train, test, a.k)))
    outs = {}
    for name, fn, args in runs:
        seconds, grown, out = measure(fn, *args)
        outs[name] = out
        rows[name] = dict(seconds=round(seconds, 3),
                          peak_rss_growth_mib=None if grown is None else round(grown, 1))
        print(f'{name:<55} {seconds:7.2f} s  peak RSS +{grown} MiB', flush=True)
    ref_t = rows['naive full matrix + topk']['seconds']
    ref_idx = outs['naive full matrix + topk'].indices
    for name, row in rows.items():
        row['naive_over_this'] = round(ref_t / row['seconds'], 2)
        out = outs[name]
        if isinstance(out, tuple):
            row['same_neighbours_as_naive'] = round(
                (torch.as_tensor(out[1]).long() == ref_idx).float().mean().item(), 4)
    report = rep.new_report('benchmarks.knn_search', argv, machine=rep.machine(a.threads),
                            setting=dict(train=a.train, test=a.test, dim=a.dim, k=a.k,
                                         chunk=a.chunk, threads=a.threads),
                            rows=rows)
    lines = [f'## kNN search, {a.train} x {a.test} features, D={a.dim}, k={a.k}', '',
             *rep.provenance(report),
             '| method | seconds | naive / this | peak RSS growth (MiB) | same neighbours as '
             'naive |', '|---|---:|---:|---:|---:|']
    for name, r in rows.items():
        grown = '-' if r['peak_rss_growth_mib'] is None else f"{r['peak_rss_growth_mib']:.0f}"
        lines.append(f"| {name} | {r['seconds']:.2f} | {r['naive_over_this']:.2f} | {grown} | "
                     f"{r.get('same_neighbours_as_naive', '-')} |")
    md = '\n'.join(lines) + '\n'
    print(md)
    print('results:', rep.write(report, md, 'knn_search', a.tag or result_name(a), a.out))
    return report


if __name__ == '__main__':
    main()
