"""The training steps that ``tests/test_ddp_equivalence.py`` runs on 2 gloo ranks and in 1 process.

One code path, :func:`run_case`, runs ``STEPS`` optimisation steps of one model the way
mmengine's ``MMDistributedDataParallel.train_step`` does (data preprocessor -> forward through the
DDP wrapper in ``mode='loss'`` -> ``parse_losses`` -> backward -> SGD step), recording the losses,
the gradients of the first step (after DDP's all-reduce) and the final ``state_dict``.  Under DDP
each rank takes its slice of the global batch of ``WORLD_SIZE * B`` samples (rank 0 the first
``B``); the single-process reference takes the whole global batch.

Cases (``CASES``): the shipped Fashion-MNIST configs of PIRL, MoCo v2 and ClusterFit's fit step,
shrunk (ResNet-18 at width 16, 32 px images, 16 px jigsaw patches, a 24-entry memory bank, a
16-key queue), each with BatchNorm as shipped (``*_bn``) and with BatchNorm replaced by GroupNorm
(``*_gn``, for the exact single-process equivalence; see the test module's docstring).

Fault injection, to see the tests fail (never set in a normal run): the environment variable
``MMSSL_DDP_EQ_BREAK`` = ``bank_sync`` (no broadcast of rank 0's initial bank),
``bank_gather`` (memory bank updated with the local batch only),
``nce_z`` (NCE's Z estimated from the local batch), ``moco_queue`` (MoCo enqueues local keys
only), ``loss_scale`` (loss multiplied by the world size) or ``grad_sync`` (no gradient
all-reduce: DDP's ``no_sync``) breaks the DDP processes on purpose.  Measured: ``bank_sync``
fails the ``pirl_bn_rank_seed`` rank identity; ``bank_gather`` the PIRL rank identities and
equivalences; ``nce_z`` both ``pirl_gn_nce`` checks; ``moco_queue`` the MoCo rank identities and
equivalence; ``loss_scale`` every equivalence check (incl. the BatchNorm one); ``grad_sync`` all
but one test.
"""
import contextlib
import os
import os.path as osp
from typing import Dict, List, Optional

import torch

from tests.helpers import gloo_group

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
WORLD_SIZE = 2
B = 4          # samples per rank
STEPS = 3
SEED = 0
BANK_LEN, NUM_NEG = 24, 8
QUEUE_LEN = 16  # a multiple of the global batch WORLD_SIZE * B; wraps around at step 2
NUM_CLASSES = 10
WIDTH = 16      # ResNet-18 stem / base channels -> 8 * WIDTH = 128 output channels
GN = dict(type='GN', num_groups=4, requires_grad=True)

_PIRL = 'configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py'
_MOCO = 'configs/mocov2/mocov2_r18_1xb64-1300it_fmnist.py'
_CF = 'configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py'
_SMALL = {'model.backbone.stem_channels': WIDTH, 'model.backbone.base_channels': WIDTH}
_PIRL_OPTS = {**_SMALL, 'model.neck.in_channels': 8 * WIDTH,
              'model.transform_neck.in_channels': 8 * WIDTH,
              'model.memory_bank.length': BANK_LEN, 'model.memory_bank.num_negatives': NUM_NEG}
_MOCO_OPTS = {**_SMALL, 'model.neck.in_channels': 8 * WIDTH, 'model.neck.hid_channels': 8 * WIDTH,
              'model.queue_len': QUEUE_LEN}
_CF_OPTS = {**_SMALL, 'model.head.in_channels': 8 * WIDTH, 'model.head.num_classes': NUM_CLASSES,
            'model.data_preprocessor.num_classes': NUM_CLASSES}

# family, config, overrides, fixed negatives ('shared' / 'per_sample' tables drawn per step, so
# that DDP and the single process contrast against the same bank entries; None: the bank's own
# random sampler, as in training)
CASES: Dict[str, dict] = {
    # as shipped (BatchNorm, InfoNCE, the bank's shared sampler): state identical across ranks
    'pirl_bn': dict(family='pirl', cfg=_PIRL, opts=_PIRL_OPTS, negatives=None),
    # ... built on each rank with its own seed (mmengine's diff_rank_seed=True): different
    # initial weights and banks; DDP syncs the weights, the bank syncs itself
    'pirl_bn_rank_seed': dict(family='pirl', cfg=_PIRL, opts=_PIRL_OPTS, negatives=None,
                              rank_seed=True),
    # GroupNorm: equal to one process with the global batch; binary NCE (Z all-reduced)
    'pirl_gn_nce': dict(family='pirl', cfg=_PIRL, negatives='shared', opts={
        **_PIRL_OPTS, 'model.backbone.norm_cfg': GN, 'model.loss': dict(
            type='NCELoss', temperature=0.07)}),
    # GroupNorm, InfoNCE, VISSL's per-sample negatives
    'pirl_gn_infonce': dict(family='pirl', cfg=_PIRL, negatives='per_sample', opts={
        **_PIRL_OPTS, 'model.backbone.norm_cfg': GN,
        'model.memory_bank.sampling': 'per_sample'}),
    'moco_bn': dict(family='moco', cfg=_MOCO, opts=_MOCO_OPTS, negatives=None),
    'moco_gn': dict(family='moco', cfg=_MOCO, negatives=None,
                    opts={**_MOCO_OPTS, 'model.backbone.norm_cfg': GN}),
    'cf_bn': dict(family='cf', cfg=_CF, opts=_CF_OPTS, negatives=None),
    'cf_gn': dict(family='cf', cfg=_CF, negatives=None,
                  opts={**_CF_OPTS, 'model.backbone.norm_cfg': GN}),
}


def build_model(name: str, seed: int = SEED) -> torch.nn.Module:
    """The case's model from its shipped config with the overrides, built after
    ``torch.manual_seed(seed)``."""
    import mmssl_ext  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    case = CASES[name]
    cfg = Config.fromfile(osp.join(REPO, case['cfg']))
    cfg.merge_from_dict(case['opts'])
    torch.manual_seed(seed)
    return MODELS.build(cfg.model)


# ---------------------------------------------------------------------------------- data


def global_batch(name: str, step: int) -> dict:
    """The global batch (``WORLD_SIZE * B`` samples) of ``step``: random images in [0, 255]."""
    from mmpretrain.structures import DataSample
    family = CASES[name]['family']
    g = torch.Generator().manual_seed(1000 * step + 7)
    n = WORLD_SIZE * B
    img = lambda *s: torch.rand(*s, generator=g) * 255  # noqa: E731
    samples = [DataSample() for _ in range(n)]
    if family == 'pirl':
        # distinct indices within a step (as DistributedSampler gives), overlapping across steps
        idx = torch.randperm(BANK_LEN, generator=g)[:n]
        for ds, i in zip(samples, idx.tolist()):
            ds.set_field(i, 'sample_idx', field_type='metainfo')
        inputs = [img(n, 3, 32, 32), img(n, 9, 3, 16, 16)]
    elif family == 'moco':
        inputs = [img(n, 3, 32, 32), img(n, 3, 32, 32)]
    else:
        labels = torch.randint(0, NUM_CLASSES, (n, ), generator=g)
        for ds, y in zip(samples, labels.tolist()):
            ds.set_gt_label(y)
        inputs = img(n, 3, 32, 32)
    return dict(inputs=inputs, data_samples=samples)


def rank_slice(data: dict, rank: int, world_size: int) -> dict:
    """Rank ``rank``'s contiguous share of a global batch (the whole batch for world size 1)."""
    if world_size == 1:
        return data
    n = len(data['data_samples']) // world_size
    sl = slice(rank * n, (rank + 1) * n)
    inputs = data['inputs']
    inputs = [v[sl] for v in inputs] if isinstance(inputs, list) else inputs[sl]
    return dict(inputs=inputs, data_samples=data['data_samples'][sl])


def fixed_negatives(name: str, step: int) -> Optional[torch.Tensor]:
    """The negative indices of ``step`` for the whole global batch: ``(K,)`` for the shared mode
    (none of the global batch's indices), ``(WORLD_SIZE * B, K)`` per sample (not the sample's
    own index); None for the cases that use the bank's sampler."""
    mode = CASES[name]['negatives']
    if mode is None:
        return None
    gidx = torch.tensor([int(ds.sample_idx) for ds in global_batch(name, step)['data_samples']])
    g = torch.Generator().manual_seed(5000 + step)
    if mode == 'shared':
        allowed = torch.tensor([i for i in range(BANK_LEN) if i not in set(gidx.tolist())])
        return allowed[torch.randint(0, allowed.numel(), (NUM_NEG, ), generator=g)]
    r = torch.randint(0, BANK_LEN - 1, (gidx.numel(), NUM_NEG), generator=g)
    return r + (r >= gidx.unsqueeze(1)).long()


def _install_fixed_negatives(model, name: str, step: int) -> None:
    """Make ``model.memory_bank.sample_indices`` return this step's fixed table: the whole
    ``(K,)`` set (shared mode), or the rows of the samples asked for (per-sample mode)."""
    table = fixed_negatives(name, step)
    if table is None:
        return
    gidx = torch.tensor([int(ds.sample_idx) for ds in global_batch(name, step)['data_samples']])

    def sample_indices(idx):
        if table.ndim == 1:
            return table.clone()
        rows = (idx.reshape(-1, 1) == gidx.reshape(1, -1)).long().argmax(dim=1)
        return table[rows].clone()

    model.memory_bank.sample_indices = sample_indices


# ---------------------------------------------------------------------------------- steps


def run_case(name: str, model: torch.nn.Module, rank: int = 0, world_size: int = 1,
             init_state: Optional[dict] = None) -> dict:
    """``STEPS`` SGD steps as ``MMDistributedDataParallel.train_step`` takes them.

    Returns ``loss`` (this process's loss per step), ``grads`` (first step, after DDP's
    all-reduce), ``init`` and ``state`` (``state_dict`` before / after).
    """
    from mmengine.optim import OptimWrapper

    from mmssl_ext.engine.dist import MMSSLDistributedDataParallel
    if init_state is not None:
        model.load_state_dict(init_state)
    model.train()
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if world_size > 1:
        # the wrapper and options setup_cpu_distributed selects for torchrun on CPU
        net = MMSSLDistributedDataParallel(model, broadcast_buffers=False,
                                           find_unused_parameters=False)
    else:
        net = model
    params = [p for p in model.parameters() if p.requires_grad]
    optim = OptimWrapper(torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4))
    losses: List[float] = []
    grads: Dict[str, torch.Tensor] = {}
    for step in range(STEPS):
        _install_fixed_negatives(model, name, step)
        data = rank_slice(global_batch(name, step), rank, world_size)
        broken = os.environ.get('MMSSL_DDP_EQ_BREAK') if world_size > 1 else None
        no_sync = net.no_sync() if broken == 'grad_sync' else contextlib.nullcontext()
        with no_sync:
            with optim.optim_context(net):
                data = model.data_preprocessor(data, training=True)
                out = net(**data, mode='loss')
            loss, _ = model.parse_losses(out)
            if broken == 'loss_scale':
                loss = loss * world_size
            optim.backward(loss)
        if step == 0:
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                     if p.grad is not None}
        optim.step()
        optim.zero_grad()
        losses.append(float(loss.detach()))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return dict(loss=losses, grads=grads, init=init, state=state)


def per_rank_grads(name: str, init_state: dict) -> dict:
    """Single process: mean over the ranks' slices of the first step's gradients, each slice in
    its own forward (BatchNorm sees the same per-rank batches as under DDP), and the losses."""
    model = build_model(name)
    model.load_state_dict(init_state)
    model.train()
    grads: Dict[str, torch.Tensor] = {}
    losses = []
    for rank in range(WORLD_SIZE):
        model.zero_grad(set_to_none=True)
        data = model.data_preprocessor(
            rank_slice(global_batch(name, 0), rank, WORLD_SIZE), training=True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        loss.backward()
        losses.append(float(loss))
        for n, p in model.named_parameters():
            if p.grad is not None:
                grads[n] = grads.get(n, 0) + p.grad / WORLD_SIZE
    return dict(loss=losses, grads=grads)


def _break(rank: int) -> None:
    """Fault injection (``MMSSL_DDP_EQ_BREAK``), only in the DDP processes."""
    what = os.environ.get('MMSSL_DDP_EQ_BREAK')
    if what == 'bank_sync':
        from mmssl_ext.models.memories import memory_bank
        memory_bank.broadcast = lambda data, src=0: None
    elif what == 'bank_gather':
        from mmssl_ext.models.memories import memory_bank
        memory_bank.MemoryBank._gather = staticmethod(lambda idx, feats: (idx, feats))
    elif what == 'nce_z':
        from mmssl_ext.models.losses import nce
        nce.get_world_size = lambda: 1
    elif what == 'moco_queue':
        from mmpretrain.models.selfsup import moco
        moco.all_gather = lambda t: [t]


def worker(rank: int, port: int, out_dir: str, names: List[str]) -> None:
    """One DDP rank (``torch.multiprocessing.spawn`` target): runs every case, saves results."""
    with gloo_group(rank, port, WORLD_SIZE):
        _break(rank)
        for name in names:
            if CASES[name].get('rank_seed'):  # as the Runner builds it with diff_rank_seed=True
                model, init = build_model(name, seed=SEED + rank), None
            else:  # the state the test process built and saved
                model = build_model(name)
                init = torch.load(osp.join(out_dir, f'{name}_init.pth'), weights_only=True)
            res = run_case(name, model, rank, WORLD_SIZE, init_state=init)
            torch.save(res, osp.join(out_dir, f'{name}_rank{rank}.pth'))
