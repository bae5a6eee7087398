"""kNN search: chunked torch and faiss against the naive full-matrix search, in one run.

Reports wall-time ratios (naive / ours) and the peak extra memory of each, on Fashion-MNIST-sized
features (60000 train x 10000 test, D=512 by default, random unit vectors).

    .venv/bin/python benchmarks/knn_search.py [--train 60000 --test 10000 --dim 512 --k 200]
"""
import argparse
import resource
import time

import torch
import torch.nn.functional as F

from mmssl_ext.evaluation.knn import knn_neighbours


def naive(train, test, k):
    s = test @ train.T  # the full N_test x N_train matrix
    return s.topk(k, dim=1)


def timed(fn, *a):
    t0 = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - t0, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--train', type=int, default=60000)
    p.add_argument('--test', type=int, default=10000)
    p.add_argument('--dim', type=int, default=512)
    p.add_argument('--k', type=int, default=200)
    p.add_argument('--chunk', type=int, default=1024)
    a = p.parse_args()
    g = torch.Generator().manual_seed(0)
    train = F.normalize(torch.randn(a.train, a.dim, generator=g), dim=1)
    test = F.normalize(torch.randn(a.test, a.dim, generator=g), dim=1)
    full_bytes = a.train * a.test * 4
    t_torch, (s1, i1) = timed(knn_neighbours, train, test, a.k, a.chunk, 'torch', False)
    t_faiss, (s2, i2) = timed(knn_neighbours, train, test, a.k, a.chunk, 'faiss', False)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_naive, top = timed(naive, train, test, a.k)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    agree = (i1 == top.indices).float().mean().item()
    agree_f = (i2 == top.indices).float().mean().item()
    print(f'{a.train} x {a.test} x D{a.dim}, k={a.k}, torch threads={torch.get_num_threads()}')
    print(f'naive full matrix : {t_naive:7.2f} s, similarity matrix {full_bytes / 2**30:.2f} GiB '
          f'(peak RSS +{(rss_after - rss_before) / 2**20:.2f} GiB)')
    print(f'torch chunked     : {t_torch:7.2f} s  ratio naive/ours {t_naive / t_torch:5.2f}, '
          f'chunk matrix {a.chunk * a.train * 4 / 2**20:.0f} MiB, same neighbours {agree:.4f}')
    print(f'faiss IndexFlatIP : {t_faiss:7.2f} s  ratio naive/ours {t_naive / t_faiss:5.2f}, '
          f'same neighbours {agree_f:.4f}')


if __name__ == '__main__':
    main()
