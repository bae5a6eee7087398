"""PCL: Prototypical Contrastive Learning (Li, Zhou, Xiong & Hoi, ICLR 2021)."""
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_world_size
from mmpretrain.models.selfsup.moco import MoCo
from mmpretrain.models.utils import batch_shuffle_ddp, batch_unshuffle_ddp
from mmpretrain.structures import DataSample

from mmssl_ext.models.algorithms.deepcluster import sample_indices
from mmssl_ext.models.algorithms.local_agg import check_num_clusters
from mmssl_ext.models.memories.data_sized import DataSizedMixin, unset_size_error
from mmssl_ext.registry import MODELS


def _check_num_samples(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f'PCL: num_samples must be an int >= 2 (the training set size), '
                         f'got {n!r}')


@MODELS.register_module()
class PCL(DataSizedMixin, MoCo):
    r"""PCL: mmpretrain's MoCo (momentum encoder, queue, InfoNCE) plus ProtoNCE.

    ``loss = InfoNCE(q, k, queue) + 1/M sum_m ProtoNCE_m(q)`` over ``M`` sets of prototypes
    (``num_clusters``; 25000, 50000, 100000 on ImageNet): the k-means centroids (normalised) of
    the momentum encoder's embeddings of the whole training set, each with a concentration
    ``phi`` (:func:`pcl_concentration`) as its temperature.  :class:`PCLHook` refreshes them at
    the start of every epoch after the warm-up epochs; until the first clustering only InfoNCE
    is trained (the paper's warm-up).  Per set ``m`` the buffers ``im2cluster_m`` (``N``,
    ``-1`` = none yet), ``prototypes_m`` (``K_m x D``) and ``concentration_m`` (``K_m``) hold
    the state, so it is in every checkpoint.  Each step draws ``num_negative_prototypes``
    negative prototypes (without replacement, torch's RNG) among the clusters of no sample of
    the batch; ``None`` (or more than there are): all of them.

    Args:
        backbone / neck / head / queue_len / feat_dim / momentum: as mmpretrain's ``MoCo``
            (the head's ``temperature`` is also the mean concentration).
        num_samples: the training set size (the length of ``im2cluster_m``); left unset
            (``None``) in a config, ``SSLRunner`` sets it from the training set.
        num_clusters: K of each prototype set, each in ``[2, num_samples]``.
        num_negative_prototypes: ``r`` (16384 officially, the ``--pcl-r`` of the queue).
        proto_loss: :class:`ProtoNCELoss` config.
    """

    SIZE_ARG = 'num_samples'

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 num_samples: Optional[int] = None,
                 num_clusters: Sequence[int] = (25000, 50000, 100000),
                 num_negative_prototypes: Optional[int] = 16384,
                 queue_len: int = 16384,
                 feat_dim: int = 128,
                 momentum: float = 0.001,
                 proto_loss: dict = dict(type='ProtoNCELoss'),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, queue_len=queue_len,
                         feat_dim=feat_dim, momentum=momentum,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if num_samples is None:  # K <= N is checked once N is known (allocate_rows)
            check_num_clusters('PCL', num_clusters, sys.maxsize, 'num_samples',
                               'unset: set from the training set')
        else:
            _check_num_samples(num_samples)
            check_num_clusters('PCL', num_clusters, num_samples, 'num_samples',
                               'the training set size')
        self.num_clusters: List[int] = [int(k) for k in num_clusters]
        if num_negative_prototypes is not None and num_negative_prototypes < 1:
            raise ValueError(f'PCL: num_negative_prototypes must be >= 1 or None, got '
                             f'{num_negative_prototypes}')
        self.num_negative_prototypes = num_negative_prototypes
        self.proto_loss = MODELS.build(proto_loss)
        self.SIZED_BUFFERS = tuple(f'im2cluster_{m}' for m in range(len(self.num_clusters)))
        for m, k in enumerate(self.num_clusters):
            self.register_buffer(f'prototypes_{m}', torch.zeros(k, feat_dim))
            self.register_buffer(f'concentration_{m}', torch.ones(k))
        self.num_samples: Optional[int] = None
        if num_samples is None:  # unsized: SSLRunner or a checkpoint sets it
            for name in self.SIZED_BUFFERS:
                self.register_buffer(name, torch.empty(0, dtype=torch.long))
        else:
            self.allocate_rows(num_samples)

    def allocate_rows(self, n: int, fill: bool = True) -> None:
        """``n`` samples, none assigned to a prototype yet (``-1``) in any set."""
        _check_num_samples(n)
        check_num_clusters('PCL', self.num_clusters, n, 'num_samples', 'the training set size')
        self.num_samples = n
        device = self.queue.device
        for name in self.SIZED_BUFFERS:
            self.register_buffer(name, torch.full((n, ), -1, dtype=torch.long, device=device))

    def prototypes(self, m: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(im2cluster, prototypes, concentration)`` of set ``m``."""
        return (getattr(self, f'im2cluster_{m}'), getattr(self, f'prototypes_{m}'),
                getattr(self, f'concentration_{m}'))

    @property
    def prototypes_ready(self) -> bool:
        return self.num_samples is not None and all(
            bool((self.prototypes(m)[0] >= 0).all()) for m in range(len(self.num_clusters)))

    @torch.no_grad()
    def set_prototypes(self, m: int, im2cluster: torch.Tensor, prototypes: torch.Tensor,
                       concentration: torch.Tensor) -> None:
        """Write set ``m``: cluster ids ``N``, prototypes ``K x D``, concentrations ``K``."""
        labels, protos, phi = self.prototypes(m)
        k = self.num_clusters[m]
        if im2cluster.shape != labels.shape or prototypes.shape != protos.shape or \
                concentration.shape != phi.shape:
            raise ValueError(f'PCL: prototype set {m} needs shapes {tuple(labels.shape)}, '
                             f'{tuple(protos.shape)}, {tuple(phi.shape)}; got '
                             f'{tuple(im2cluster.shape)}, {tuple(prototypes.shape)}, '
                             f'{tuple(concentration.shape)}')
        if int(im2cluster.min()) < 0 or int(im2cluster.max()) >= k:
            raise ValueError(f'PCL: cluster ids of set {m} must be in [0, {k})')
        if not bool((concentration > 0).all()):
            raise ValueError(f'PCL: concentrations of set {m} must be positive')
        labels.copy_(im2cluster)
        protos.copy_(prototypes)
        phi.copy_(concentration)

    @torch.no_grad()
    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """The momentum encoder's normalised embedding (what the prototypes cluster)."""
        return F.normalize(self.encoder_k(img)[0], dim=1)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        n = keys.shape[0] * get_world_size()
        if self.queue_len % n:
            raise ValueError(f'PCL: queue_len={self.queue_len} is not a multiple of the global '
                             f'batch {n} (MoCo enqueues whole batches); set model.queue_len to a '
                             f'multiple of it and train_dataloader.drop_last=True')
        super()._dequeue_and_enqueue(keys)

    def _negative_ids(self, pos_ids: torch.Tensor, k: int) -> torch.Tensor:
        free = torch.ones(k, dtype=torch.bool, device=pos_ids.device)
        free[pos_ids] = False
        ids = free.nonzero().squeeze(1)
        r = self.num_negative_prototypes
        if r is None or r >= ids.numel():
            return ids
        return ids[torch.randperm(ids.numel(), device=ids.device)[:r]]

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('PCL expects two views per image (a MultiView transform with '
                             'num_views=2 in the pipeline)')
        if self.num_samples is None:  # PCLHook could never cluster: fail before training
            raise unset_size_error('PCL', 'num_samples')
        im_q, im_k = inputs
        q = F.normalize(self.neck(self.backbone(im_q))[0], dim=1)
        with torch.no_grad():  # mmpretrain's MoCo key path
            self.encoder_k.update_parameters(nn.Sequential(self.backbone, self.neck))
            im_k, idx_unshuffle = batch_shuffle_ddp(im_k)
            k = F.normalize(self.encoder_k(im_k)[0], dim=1)
            k = batch_unshuffle_ddp(k, idx_unshuffle)
        l_pos = torch.einsum('nc,nc->n', [q, k]).unsqueeze(-1)
        l_neg = torch.einsum('nc,ck->nk', [q, self.queue.clone().detach()])
        losses = dict(loss=self.head.loss(l_pos, l_neg))
        self._dequeue_and_enqueue(k)
        if self.prototypes_ready:  # after the warm-up epochs
            idx = sample_indices(data_samples, self.num_samples, q.device, 'PCL')
            terms = []
            for m, k_m in enumerate(self.num_clusters):
                labels, protos, phi = self.prototypes(m)
                pos_ids = labels[idx]
                terms.append(self.proto_loss(q, pos_ids, self._negative_ids(pos_ids, k_m),
                                             protos, phi))
            losses['loss_proto'] = torch.stack(terms).mean()
        return losses
