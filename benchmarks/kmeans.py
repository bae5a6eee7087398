"""k-means speed: faiss (what mmssl_ext.clustering uses) against scikit-learn's KMeans.

Same data (a gaussian mixture, N x D float32), same K, same maximum of Lloyd iterations, same
random initialisation scheme (K random samples; no k-means++), same thread count (faiss via
``omp_set_num_threads``, scikit-learn via threadpoolctl).  Both objectives (inertia) are computed
the same way from the returned centroids.  faiss is then timed at half N, half D and half K to
measure how its cost scales, and the time of ClusterFit's ImageNet cluster step
(1.28M x 2048 -> 16000 clusters, 50 iterations as VISSL) is projected two ways from the time per
iteration: the cost model ``N * D * K * iters`` and the measured exponents.  (Both libraries stop
early at convergence: faiss when the objective stops changing, sklearn with ``tol=0`` when no
label changes; the table shows the iterations each ran and the time per iteration.)  Writes
``benchmarks/results/kmeans_n<N>-d<D>-k<K>_cpu_seed<S>.json`` and ``.md`` (``--tag`` names them
instead; with the command, the machine and the date) and prints the table.

    .venv/bin/python -m benchmarks.kmeans            # N=100000, D=512, K=1000, 20 iterations
    .venv/bin/python -m benchmarks.kmeans --quick    # seconds: N=4000, D=64, K=40, 10 iterations

scikit-learn is in requirements.txt; without it only faiss is timed.
"""
import argparse
import time

import numpy as np

from benchmarks import report as rep

IMAGENET = dict(n=1_281_167, dim=2048, k=16000, niter=50)


def gaussian_mixture(n: int, dim: int, components: int, noise: float = 1.0,
                     seed: int = 0) -> np.ndarray:
    """``n`` points around ``components`` random centres (N(0, 1) centres, N(0, noise^2)
    offsets: overlapping clusters, so Lloyd's iterations keep moving points)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((components, dim), dtype=np.float32)
    x = centres[rng.integers(0, components, n)]
    x += noise * rng.standard_normal((n, dim), dtype=np.float32)
    return x


def inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    import faiss
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    d, _ = index.search(x, 1)
    return float(d.astype(np.float64).sum())


def run_faiss(x: np.ndarray, k: int, niter: int, seed: int) -> dict:
    import faiss
    t0 = time.perf_counter()
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False,
                      max_points_per_centroid=len(x), min_points_per_centroid=1)
    km.train(x)
    _, labels = km.index.search(x, 1)  # final assignment of every sample, as kmeans() does
    t = time.perf_counter() - t0
    # faiss stops early once the objective no longer changes (sklearn with tol=0 once no label
    # changes): compare per iteration too
    it = len(km.obj) or niter
    return dict(seconds=t, iterations=it, seconds_per_iter=t / it,
                inertia=inertia(x, km.centroids))


def run_sklearn(x: np.ndarray, k: int, niter: int, seed: int, threads: int) -> dict:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads):
        t0 = time.perf_counter()
        km = KMeans(n_clusters=k, init='random', n_init=1, max_iter=niter, tol=0.0,
                    algorithm='lloyd', random_state=seed)
        km.fit(x)
        t = time.perf_counter() - t0
    return dict(seconds=t, iterations=int(km.n_iter_), seconds_per_iter=t / int(km.n_iter_),
                inertia=inertia(x, km.cluster_centers_.astype(np.float32)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m benchmarks.kmeans',
                                description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=100_000)
    p.add_argument('--dim', type=int, default=512)
    p.add_argument('--k', type=int, default=1000)
    p.add_argument('--niter', type=int, default=20)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--noise', type=float, default=1.0, help='per-dimension std around a centre')
    p.add_argument('--quick', action='store_true', help='tiny sizes, a smoke run')
    p.add_argument('--no-scaling', action='store_true', help='skip the half-size faiss runs')
    p.add_argument('--tag', help='results: benchmarks/results/kmeans_<tag>.* (default: '
                   'n<N>-d<D>-k<K>_cpu_seed<S>)')
    p.add_argument('--out', default=rep.RESULTS, help='results folder')
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.dim, a.k, a.niter = 4000, 64, 40, 10
    return a


def result_name(a: argparse.Namespace) -> str:
    """``n<N>-d<D>-k<K>_cpu_seed<S>``: what the results file of ``a`` (:func:`parse_args`)
    holds."""
    return rep.result_name(f'n{a.n}-d{a.dim}-k{a.k}', 'cpu', seed=a.seed)


def main(argv=None):
    a = parse_args(argv)

    import faiss
    faiss.omp_set_num_threads(a.threads)
    try:
        import torch
        torch.set_num_threads(a.threads)
    except ImportError:
        pass
    try:
        import sklearn
        have_sklearn = True
    except ImportError:
        have_sklearn = False
        print('scikit-learn is not installed (pip install scikit-learn; it is not in '
              'requirements.txt): timing faiss only')

    x = gaussian_mixture(a.n, a.dim, a.k, a.noise, a.seed)
    run_faiss(x[:1000], 10, 2, a.seed)  # warm up OpenMP / BLAS outside the timings
    res = rep.new_report('benchmarks.kmeans', argv,
                         setting=dict(n=a.n, dim=a.dim, k=a.k, niter=a.niter, threads=a.threads,
                                      data=f'gaussian mixture, K components, noise {a.noise}'),
                         machine=rep.machine(a.threads) + f', faiss {faiss.__version__}')
    print(f'{a.n} x {a.dim} -> K={a.k}, {a.niter} iterations, {a.threads} threads')
    res['faiss'] = run_faiss(x, a.k, a.niter, a.seed)
    print(f'faiss   {res["faiss"]["seconds"]:8.2f} s')
    if have_sklearn:
        res['sklearn_version'] = sklearn.__version__
        res['sklearn'] = run_sklearn(x, a.k, a.niter, a.seed, a.threads)
        res['ratio_sklearn_over_faiss'] = res['sklearn']['seconds'] / res['faiss']['seconds']
        res['ratio_per_iter'] = res['sklearn']['seconds_per_iter'] / \
            res['faiss']['seconds_per_iter']
        print(f'sklearn {res["sklearn"]["seconds"]:8.2f} s')

    # projection to ClusterFit's ImageNet cluster step
    t = res['faiss']['seconds_per_iter']
    work = a.n * a.dim * a.k
    big = IMAGENET['n'] * IMAGENET['dim'] * IMAGENET['k'] * IMAGENET['niter']
    proj = dict(target=IMAGENET, linear_model_s=t * big / work)
    if not a.no_scaling:
        exps = {}
        for name, kw in (('n', dict(n=a.n // 2)), ('dim', dict(dim=a.dim // 2)),
                         ('k', dict(k=a.k // 2))):
            s = dict(n=a.n, dim=a.dim, k=a.k)
            s.update(kw)
            xs = x[:s['n'], :s['dim']].copy() if name != 'k' else x
            th = run_faiss(np.ascontiguousarray(xs), s['k'], a.niter,
                           a.seed)['seconds_per_iter']
            exps[name] = float(np.log2(t / th))
            print(f'faiss at half {name:<3}: {th:7.3f} s per iteration (exponent '
                  f'{exps[name]:.2f})')
        proj['exponents'] = exps
        proj['measured_exponents_s'] = t * (IMAGENET['n'] / a.n) ** exps['n'] * \
            (IMAGENET['dim'] / a.dim) ** exps['dim'] * (IMAGENET['k'] / a.k) ** exps['k'] * \
            IMAGENET['niter']
    res['projection_faiss_imagenet'] = proj
    if 'ratio_sklearn_over_faiss' in res:
        proj['sklearn_linear_model_s'] = proj['linear_model_s'] * res['ratio_per_iter']

    def h(s):
        return f'{s:.2f} s' if s < 120 else (f'{s / 60:.1f} min' if s < 7200
                                             else f'{s / 3600:.1f} h')

    lines = [f'## k-means, {a.n} x {a.dim} -> K={a.k}, max {a.niter} iterations', '',
             *rep.provenance(res),
             f'| {a.threads} threads | wall time | iterations run | per iteration | inertia |',
             '|---|---|---|---|---|']
    for name in ('faiss', 'sklearn'):
        if name in res:
            r = res[name]
            lines.append(f'| {name} | {h(r["seconds"])} | {r["iterations"]} | '
                         f'{r["seconds_per_iter"]:.3g} s | {r["inertia"]:.4g} |')
    if 'ratio_sklearn_over_faiss' in res:
        lines.append(f'| sklearn / faiss | {res["ratio_sklearn_over_faiss"]:.2f}x | | '
                     f'{res["ratio_per_iter"]:.2f}x | |')
    lines += ['', f'Projected faiss time for {IMAGENET["n"]:,} x {IMAGENET["dim"]} -> '
              f'K={IMAGENET["k"]}, {IMAGENET["niter"]} iterations on this machine: '
              f'{h(proj["linear_model_s"])} (cost ~ N*D*K*iters)'
              + (f', {h(proj["measured_exponents_s"])} (measured exponents '
                 f'N^{proj["exponents"]["n"]:.2f} D^{proj["exponents"]["dim"]:.2f} '
                 f'K^{proj["exponents"]["k"]:.2f})' if 'exponents' in proj else '')
              + (f'; sklearn {h(proj["sklearn_linear_model_s"])}'
                 if 'sklearn_linear_model_s' in proj else '') + '.']
    if a.quick:
        lines.append('(--quick: sizes this small time overheads, not the O(N*D*K) work; the '
                     'projection is only meaningful from the default sizes)')
    md = '\n'.join(lines) + '\n'
    print(md)
    print('results:', rep.write(res, md, 'kmeans', a.tag or result_name(a), a.out))


if __name__ == '__main__':
    main()
