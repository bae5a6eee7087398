"""DDP correctness of the shipped method families on CPU: 2 gloo processes vs. one process.

PIRL (memory bank + NCE / InfoNCE), mmpretrain's MoCo v2 (queue, momentum encoder) and
ClusterFit's fit step (an ``ImageClassifier`` on pseudo labels) run ``STEPS`` = 3 SGD steps
(lr 0.1, momentum 0.9, wd 1e-4) through ``MMSSLDistributedDataParallel`` (the wrapper and
options that ``setup_cpu_distributed`` selects for torchrun on CPU) with ``B`` = 4 random samples
per rank, and in one process with the global batch of 8 (rank 0's samples first); the steps are
``tests/ddp_equivalence_worker.py``'s ``run_case``, the same code in both settings.

Checks:

1. **State identical on every rank** after 3 steps, with BatchNorm as shipped (``*_bn``): every
   parameter, the memory bank, NCE's Z, the MoCo queue and pointer, the momentum encoder,
   bit-for-bit.  The only entries allowed to differ are BatchNorm running statistics (see below).
   ``pirl_bn_rank_seed`` builds the model on each rank after its own seed, as the Runner does
   with ``randomness=dict(diff_rank_seed=True)``: different initial weights (DDP broadcasts rank
   0's at wrap time) and different initial memory banks (DDP does NOT broadcast buffers with
   ``broadcast_buffers=False``; ``MemoryBank.update`` broadcasts rank 0's bank on its first call).
   (mmpretrain's MoCo has no such sync: with ``diff_rank_seed=True`` its random initial queue
   differs per rank until it has been overwritten once, ``queue_len / global batch`` steps.)
2. **One DDP step == one single-process step on the global batch**: the mean of the ranks' losses
   equals the single-process loss and the (all-reduced) gradients equal the single-process
   gradients; after 3 steps the whole ``state_dict`` (weights, bank, Z, queue, pointer, momentum
   encoder) equals the single-process one.  This holds by construction only where nothing
   depends on how the global batch is split (``*_gn`` cases); ``cf_bn`` asserts the property
   that does hold with BatchNorm.

Tolerances (float32, the same samples reduced in a different order: per-rank partial sums plus
gloo's all-reduce vs. one sum over 8 samples): loss ``rtol=1e-5, atol=1e-6``; first-step
gradients (entries up to ~2) and the state after 3 steps ``rtol=1e-5, atol=5e-6``.  Measured
largest deviations: loss 5e-7, gradients 6e-7, state 2e-7; the faults these tests exist for
(a local bank update, a per-rank Z, local keys in the queue, a loss scaled by the world size)
move the compared values by 1e-2 and more.
Rank-to-rank comparisons are exact (``torch.equal``): both ranks apply the same all-reduced
gradients and the same gathered updates.

Where the single-process equivalence does NOT hold by construction, and what is asserted instead:

* **BatchNorm** normalises with the statistics of the batch it sees: under DDP each rank's 4
  samples, in one process all 8.  Losses and gradients therefore differ from a batch-8 step.
  ``SyncBN`` makes them equal (on gloo/CPU ``MMSSLDistributedDataParallel`` runs it as
  ``CPUSyncBatchNorm``, tested in ``tests/engine/test_cpu_sync_bn.py``), but the shipped
  Fashion-MNIST configs use plain BN, so here the backbone's BN is replaced by GroupNorm (per
  sample, no batch statistic) for the equivalence (``*_gn``).  For
  ``cf_bn`` the exact BatchNorm property is asserted: DDP's gradient equals the mean over the
  ranks' slices of single-process gradients, each slice in its own forward, and each rank's loss
  equals its slice's loss.  BN *running* statistics are per rank too: mmengine wraps models with
  ``broadcast_buffers=False`` (so does ``setup_cpu_distributed``), so ``running_mean`` /
  ``running_var`` are local estimates (rank 0's are checkpointed); check 1 allows exactly those
  entries (and their copies in MoCo's momentum encoder) to differ, and asserts they do differ,
  i.e. that the ranks really saw different data.
* **MoCo's batch shuffle** draws a random permutation of the global batch so that the key
  encoder's BN statistics mix samples of both ranks; with BN the keys depend on that draw and on
  the per-rank batches.  With GroupNorm a key depends on its own image only, so shuffle and
  un-shuffle cancel exactly and the keys, the loss and the queue equal the single-process ones.
  The queue receives the all-gathered keys in rank order, i.e. in the single-process batch order.
* **PIRL's negatives** are drawn at random per call.  With the bank's shared sampler each rank
  excludes only its own batch's indices, so a rank-0 sample may meet the entry of a rank-1 sample
  among its negatives, which one process with batch 8 never does; and the draws need not
  coincide with the single process's.  The equivalence cases therefore draw a fixed table per
  step (``fixed_negatives``: a shared set excluding the whole global batch, or VISSL's per-sample
  rows excluding the own index) and give each side the same negatives; the ``pirl_bn`` case
  keeps the bank's own sampler.

``MMSSL_DDP_EQ_BREAK`` (see the worker) breaks the DDP side on purpose to see these tests fail.
"""
import time

import pytest
import torch
import torch.multiprocessing as mp

from tests import ddp_equivalence_worker as W
from tests.helpers import free_port

LOSS_TOL = dict(rtol=1e-5, atol=1e-6)
GRAD_TOL = dict(rtol=1e-5, atol=5e-6)
STATE_TOL = dict(rtol=1e-5, atol=5e-6)
BN_STAT_SUFFIXES = ('running_mean', 'running_var')


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    """All cases: initial state built once here, 2 gloo ranks (one spawn), then one process."""
    out = tmp_path_factory.mktemp('ddp_equivalence')
    torch.set_num_threads(1)
    names = list(W.CASES)
    t0 = time.time()
    models = {}
    for name in names:
        models[name] = W.build_model(name)
        torch.save(models[name].state_dict(), out / f'{name}_init.pth')
    mp.spawn(W.worker, args=(free_port(), str(out), names), nprocs=W.WORLD_SIZE, join=True)
    t1 = time.time()
    res = {}
    for name in names:
        init = torch.load(out / f'{name}_init.pth', weights_only=True)
        ranks = [torch.load(out / f'{name}_rank{r}.pth', weights_only=True)
                 for r in range(W.WORLD_SIZE)]
        single = (None if W.CASES[name].get('rank_seed')
                  else W.run_case(name, models[name], init_state=init))
        res[name] = dict(ranks=ranks, single=single, init=init)
    res['cf_bn']['per_rank'] = W.per_rank_grads('cf_bn', res['cf_bn']['init'])
    print(f'\nDDP ranks {t1 - t0:.1f} s, single process {time.time() - t1:.1f} s')
    return res


def _is_bn_stat(key: str) -> bool:
    return key.endswith(BN_STAT_SUFFIXES)


def _assert_states_close(actual: dict, expected: dict, **tol) -> None:
    assert actual.keys() == expected.keys()
    for k in expected:
        if expected[k].is_floating_point():
            torch.testing.assert_close(actual[k], expected[k], **tol, msg=lambda m: f'{k}: {m}')
        else:
            assert torch.equal(actual[k], expected[k]), f'{k}: {actual[k]} != {expected[k]}'


# ------------------------------------------------------------------ 1. identical state on ranks


@pytest.mark.parametrize('name', ['pirl_bn', 'pirl_bn_rank_seed', 'moco_bn', 'cf_bn',
                                  'pirl_gn_nce', 'moco_gn', 'cf_gn'])
def test_state_identical_on_every_rank(results, name):
    """After 3 steps with different samples per rank: weights, memory bank, NCE's Z, MoCo's queue,
    pointer and momentum encoder are bit-identical on both ranks; only BN running statistics
    (local by mmengine's ``broadcast_buffers=False``) differ, and they do.  ``pirl_bn_rank_seed``:
    the same although each rank built its model with its own seed (``diff_rank_seed=True``)."""
    r0, r1 = (r['state'] for r in results[name]['ranks'])
    init = results[name]['ranks'][0]['init']
    if W.CASES[name].get('rank_seed'):  # the ranks really started from different banks
        assert not torch.equal(init['memory_bank.feats'],
                               results[name]['ranks'][1]['init']['memory_bank.feats'])
    assert r0.keys() == r1.keys() == init.keys()
    differing = sorted(k for k in r0 if not torch.equal(r0[k], r1[k]))
    assert all(_is_bn_stat(k) for k in differing), \
        f'{name}: state differs across ranks: {[k for k in differing if not _is_bn_stat(k)]}'
    bn_stats = [k for k in r0 if _is_bn_stat(k)]
    if bn_stats:  # the ranks saw different batches (so the identity above is not vacuous)
        assert set(differing) == set(bn_stats), sorted(set(bn_stats) - set(differing))[:5]
    else:
        assert not differing
    # the shared state really moved in those 3 steps (a frozen bank / queue would pass trivially)
    moved = {'pirl': ['memory_bank.feats'], 'moco': ['queue', 'encoder_k.module.0.conv1.weight'],
             'cf': []}[W.CASES[name]['family']] + ['backbone.conv1.weight']
    for k in moved:
        assert not torch.equal(r0[k], init[k]), f'{k} did not change'
    if W.CASES[name]['family'] == 'moco':
        # 3 steps of 8 gathered keys into a 16-key queue: the pointer wrapped to 8 on both ranks
        assert int(r0['queue_ptr']) == int(r1['queue_ptr']) == 3 * 8 % W.QUEUE_LEN
    if name == 'pirl_gn_nce':
        assert float(r0['nce.z']) > 0 and torch.equal(r0['nce.z'], r1['nce.z'])
    # DDP left the same averaged gradients on both ranks
    g0, g1 = (r['grads'] for r in results[name]['ranks'])
    assert g0.keys() == g1.keys() and g0
    assert all(torch.equal(g0[k], g1[k]) for k in g0)


# ------------------------------------------------------------------ 2. DDP step == 1-process step


@pytest.mark.parametrize('name', ['pirl_gn_nce', 'pirl_gn_infonce', 'moco_gn', 'cf_gn'])
def test_ddp_step_equals_single_process_global_batch(results, name):
    """Without batch statistics (GroupNorm) and with the same negatives on both sides, one step
    of 2 ranks x 4 samples gives the loss (mean over ranks) and the gradients of one process with
    the 8 samples, and 3 steps leave the same state: weights, bank, Z, queue, momentum encoder."""
    ranks, single = results[name]['ranks'], results[name]['single']
    ddp_loss = sum(r['loss'][0] for r in ranks) / W.WORLD_SIZE
    torch.testing.assert_close(torch.tensor(ddp_loss), torch.tensor(single['loss'][0]),
                               **LOSS_TOL)
    g_ddp, g_single = ranks[0]['grads'], single['grads']
    assert g_ddp.keys() == g_single.keys()
    for k in g_single:
        torch.testing.assert_close(g_ddp[k], g_single[k], **GRAD_TOL,
                                   msg=lambda m: f'grad of {k}: {m}')
    _assert_states_close(ranks[0]['state'], single['state'], **STATE_TOL)


def test_pirl_equivalence_is_not_vacuous(results):
    """The split matters for the per-rank view: a rank's loss is not the global one, and the
    bank rows updated at the last step came from both ranks' samples."""
    for name in ('pirl_gn_nce', 'pirl_gn_infonce'):
        ranks, single = results[name]['ranks'], results[name]['single']
        assert abs(ranks[0]['loss'][0] - ranks[1]['loss'][0]) > 1e-3
        init, st = results[name]['init']['memory_bank.feats'], ranks[0]['state']
        last = W.global_batch(name, W.STEPS - 1)['data_samples']
        idx = [int(ds.sample_idx) for ds in last]
        assert not torch.equal(st['memory_bank.feats'][idx], init[idx])
        assert not torch.equal(single['state']['memory_bank.feats'][idx], init[idx])


def test_clusterfit_batchnorm_ddp_grad_is_mean_of_per_rank_batches(results):
    """With BatchNorm the exact property is per-rank normalisation: each rank's loss is that of
    its 4 samples in their own forward, and DDP's gradient is the mean of those per-slice
    gradients (not their sum: no scaling by the world size), while a batch-8 step differs."""
    res = results['cf_bn']
    ranks, per_rank = res['ranks'], res['per_rank']
    for r in range(W.WORLD_SIZE):
        torch.testing.assert_close(torch.tensor(ranks[r]['loss'][0]),
                                   torch.tensor(per_rank['loss'][r]), **LOSS_TOL)
    for k, g in per_rank['grads'].items():
        torch.testing.assert_close(ranks[0]['grads'][k], g, **GRAD_TOL,
                                   msg=lambda m: f'grad of {k}: {m}')
    # ... and that is a different step from one BN forward over all 8 samples
    k = 'backbone.conv1.weight'
    assert not torch.allclose(ranks[0]['grads'][k], res['single']['grads'][k], **GRAD_TOL)
