"""Memory stays flat over a long run: a few hundred iterations of the Fashion-MNIST PIRL config
(shrunk: tiny tree, batch 4, 8-channel ResNet-18, memory bank sized to the tree, no workers)
through tools/train.py's path, logging every iteration, a checkpoint every 100 iterations, no
online kNN hook.

Two independent measurements after a 100-iteration warm-up, between iterations 100 and 300:

* resident memory (``/proc/self/statm``, tracemalloc's own bookkeeping subtracted) catches
  tensors kept alive (their storage is not a Python allocation): one retained PIRL batch is
  ~160 KB, i.e. ~32 MB over 200 iterations, well above the 20 MB bound;
* the Python heap (``tracemalloc``, started at iteration 50) catches Python objects kept alive:
  the total growth must stay below 256 KB (~1.3 KB per iteration) and no allocation site (grouped
  by its 2-frame traceback) may grow by more than 16 KB in *both* 100-iteration halves.

mmengine's ``MessageHub`` appends every logged scalar to a ``HistoryBuffer`` (``np.append``, 8 B
value + 8 B count per iteration and key), bounded by ``max_length`` (1e6 by default): that growth
is expected, is checked to be exactly that and bounded, and is taken out of the heap totals.
"""
import gc
import os
import os.path as osp
import tracemalloc
from typing import Dict, List, Tuple

from mmengine.hooks import Hook

from mmssl_ext.cli import train as train_api
from mmssl_ext.registry import ROOT_HOOKS
from tests.helpers import REPO

PIRL_CFG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py')
MAX_ITERS = 300
WARMUP = 100          # measurements compare iteration WARMUP with MAX_ITERS
TRACE_FROM = 50       # tracemalloc runs from here (it slows allocations ~2x)
TRACE_FRAMES = 2      # enough to tell MessageHub's np.append from others
RSS_BOUND = 20 * 2**20
HEAP_BOUND = 256 * 2**10
SITE_BOUND = 16 * 2**10  # per 100 iterations, in both halves
HISTORY_BUFFER_FILE = osp.join('mmengine', 'logging', 'history_buffer.py')
_PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc/self/statm``), minus what tracemalloc
    itself uses for its traces."""
    with open('/proc/self/statm') as f:
        rss = int(f.read().split()[1]) * _PAGE
    return rss - (tracemalloc.get_tracemalloc_memory() if tracemalloc.is_tracing() else 0)


def _is_history_buffer(traceback: tracemalloc.Traceback) -> bool:
    return any(HISTORY_BUFFER_FILE in frame.filename for frame in traceback)


def growth_by_site(old: tracemalloc.Snapshot, new: tracemalloc.Snapshot
                   ) -> Dict[tracemalloc.Traceback, int]:
    """Bytes each allocation site (traceback) gained from ``old`` to ``new``."""
    return {s.traceback: s.size_diff for s in new.compare_to(old, 'traceback')}


def steadily_growing_sites(snapshots: List[tracemalloc.Snapshot], bound: int,
                           ignore=_is_history_buffer) -> List[Tuple[int, str]]:
    """Sites that grew by more than ``bound`` bytes between *every* pair of consecutive
    snapshots: ``[(smallest growth, formatted traceback), ...]``."""
    steps = [growth_by_site(a, b) for a, b in zip(snapshots, snapshots[1:])]
    out = []
    for site in steps[0]:
        if ignore(site):
            continue
        grown = [step.get(site, 0) for step in steps]
        if min(grown) > bound:
            out.append((min(grown), '\n'.join(site.format())))
    return sorted(out, reverse=True)


@ROOT_HOOKS.register_module(force=True)
class _MemoryGrowthProbeHook(Hook):
    """Samples RSS every 10 iterations and takes tracemalloc snapshots at 100 / 200 / 300; runs
    last (after the checkpoint of the same iteration is written)."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.rss: Dict[int, int] = {}
        self.snapshots: Dict[int, tracemalloc.Snapshot] = {}
        self.heap: Dict[int, int] = {}
        self._started_tracing = False

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        it = runner.iter + 1
        if it == TRACE_FROM and not tracemalloc.is_tracing():
            tracemalloc.start(TRACE_FRAMES)
            self._started_tracing = True
        if it >= WARMUP and it % 10 == 0:
            if it % 100 == 0:
                gc.collect()
            self.rss[it] = rss_bytes()
            if it % 100 == 0 and tracemalloc.is_tracing():
                snap = tracemalloc.take_snapshot().filter_traces([
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, __file__)])
                self.snapshots[it] = snap
                self.heap[it] = sum(t.size for t in snap.traces)

    def after_train(self, runner) -> None:
        if self._started_tracing:
            tracemalloc.stop()


def _top_growth(old, new, n=5) -> str:
    stats = new.compare_to(old, 'lineno')[:n]
    return '\n'.join(f'  {s.size_diff / 1024:+.1f} KiB {s.count_diff:+d} blocks  '
                     f'{s.traceback[0].filename}:{s.traceback[0].lineno}' for s in stats)


def test_steadily_growing_sites_finds_a_leak():
    """The detector itself: a list that keeps a new object per step is found, a bounded cache
    is not."""
    leak, cache = [], {}
    tracemalloc.start(TRACE_FRAMES)
    try:
        snaps = []
        for step in range(3):
            snaps.append(tracemalloc.take_snapshot())
            for i in range(300):
                leak.append(bytearray(200))  # the leaking site: +60 KB per step
                cache[i % 50] = bytearray(200)  # bounded
        snaps.append(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    found = steadily_growing_sites(snaps[1:], bound=16 * 2**10)
    assert len(found) == 1 and 'leak.append' in found[0][1]


def test_memory_flat_over_300_iterations(tiny_tree, tmp_path):
    work = str(tmp_path / 'work')
    args = train_api.parse_args([
        PIRL_CFG, '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'model.memory_bank.length=24',
        'model.memory_bank.num_negatives=16', 'model.backbone.base_channels=8',
        'model.backbone.stem_channels=8', 'model.neck.in_channels=64',
        'model.transform_neck.in_channels=64', f'train_cfg.max_iters={MAX_ITERS}',
        'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=100',
        'default_hooks.checkpoint.max_keep_ckpts=1'])
    cfg = train_api.merge_args(train_api.load_config(args.config), args)
    from mmssl_ext.engine.atomic_checkpoint import use_atomic_checkpoints
    use_atomic_checkpoints(cfg)
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='_MemoryGrowthProbeHook')]
    runner = train_api.build_runner(cfg)
    hook_names = [type(h).__name__ for h in runner.hooks]
    assert 'KNNEvalHook' not in hook_names and 'LoggerHook' in hook_names
    try:
        runner.train()
    finally:  # a failed run must not leave tracing on for the tests after this one
        if tracemalloc.is_tracing():
            tracemalloc.stop()
    assert runner.iter == MAX_ITERS
    probe = next(h for h in runner.hooks if isinstance(h, _MemoryGrowthProbeHook))

    # MessageHub: every logged scalar has a HistoryBuffer bounded by max_length, one entry per
    # iteration so far (8 B value + 8 B count); the collapse monitor's (on by default in the
    # runtime) one per check: before the first iteration and every `interval`
    buffers = runner.message_hub.log_scalars
    assert buffers, 'nothing was logged'
    monitor = next(h for h in runner.hooks if type(h).__name__ == 'CollapseMonitorHook')
    checked = {k for k in buffers if k.startswith('collapse/')}
    assert checked, 'the collapse monitor logged nothing'
    for key, buf in buffers.items():
        values, counts = buf.data
        assert 0 < buf.max_length <= 1_000_000, key
        entries = MAX_ITERS // monitor.interval + 1 if key in checked else MAX_ITERS
        assert len(values) == len(counts) == min(entries, buf.max_length), key
    # (the monitor's few entries between the snapshots are within the tolerance below)
    history_per_iter = sum(buf.data[0].itemsize + buf.data[1].itemsize
                           for key, buf in buffers.items() if key not in checked)

    # resident memory
    rss = probe.rss
    growth = rss[MAX_ITERS] - rss[WARMUP]
    summary = (f'RSS at {WARMUP}: {rss[WARMUP] / 2**20:.1f} MiB, at {MAX_ITERS}: '
               f'{rss[MAX_ITERS] / 2**20:.1f} MiB (growth {growth / 2**20:+.2f} MiB); '
               f'samples {[round(v / 2**20, 1) for v in rss.values()]}')
    print(summary)
    assert growth < RSS_BOUND, summary

    # Python heap
    snaps = [probe.snapshots[i] for i in sorted(probe.snapshots)]
    assert sorted(probe.snapshots) == [100, 200, 300]
    first, last = snaps[0], snaps[-1]
    history_growth = sum(s.size_diff for s in last.compare_to(first, 'traceback')
                         if _is_history_buffer(s.traceback))
    heap_growth = probe.heap[MAX_ITERS] - probe.heap[WARMUP] - history_growth
    report = (f'Python heap growth {WARMUP}->{MAX_ITERS}: {heap_growth / 1024:+.1f} KiB plus '
              f'{history_growth / 1024:+.1f} KiB in MessageHub history buffers; top sites:\n'
              + _top_growth(first, last))
    print(report)
    # the history buffers grew by exactly one entry per key and iteration (+/- one array's
    # over-allocation): bounded by max_length, nothing else hides behind np.append
    expected = history_per_iter * (MAX_ITERS - WARMUP)
    assert abs(history_growth - expected) <= 0.25 * expected + 4096, report
    assert heap_growth < HEAP_BOUND, report
    growing = steadily_growing_sites(snaps, SITE_BOUND)
    assert not growing, 'allocation sites growing steadily:\n' + '\n\n'.join(
        f'{g / 1024:.1f} KiB per 100 iterations at least:\n{site}' for g, site in growing)
