"""CMC: Contrastive Multiview Coding (Tian, Krishnan & Isola, 2019; ECCV 2020)."""
import copy
from itertools import combinations
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import ModuleList
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.models.data_preprocessors import (  # noqa: F401 (their old path)
    CMC_LAB_MEAN, CMC_LAB_STD, CMCDataPreprocessor)
from mmssl_ext.registry import MODELS

_OBJECTIVES = ('core', 'full')


@MODELS.register_module()
class CMC(BaseSelfSupervisor):
    r"""Contrastive Multiview Coding with one encoder and one memory bank per view.

    Tian, Krishnan & Isola, "Contrastive Multiview Coding", arXiv 1906.05849 (ECCV 2020).  An
    image gives ``M >= 2`` views ``v_1 .. v_M`` (by default the L and ab channels of its Lab
    colour, :class:`CMCDataPreprocessor`); view ``i`` has its own encoder ``f_i`` (backbone +
    linear projection to 128-d, L2-normalised) and its own memory bank ``m^i`` (one running
    embedding per training image, :class:`~mmssl_ext.models.memories.MemoryBank`)::

        z_i   = normalize(neck_i(backbone_i(v_i)))                         B x 128, view i
        L_contrast^{i,j} = NCE(s+ = <z_i, m^j[idx]>,  s- = <z_i, m^j[n]>, n ~ bank)   (anchor i)
        L(V_i, V_j)      = L_contrast^{i,j} + L_contrast^{j,i}            both directions
        core view : L_C = sum_{j != c} L(V_c, V_j)                        (c = core_view = 0)
        full graph: L_F = sum_{i < j}  L(V_i, V_j)                        all M(M-1)/2 pairs
        m^i[idx] <- normalize(mu * m^i[idx] + (1 - mu) * z_i)             after the loss

    The positive of anchor ``z_i`` is the OTHER view's memory entry of the same image (before
    this step's update) and its negatives are that bank's entries of other images; the gradient
    of ``L_contrast^{i,j}`` thus reaches encoder ``i`` only.  The negative indices are drawn once
    per step and used for every bank, as CMC's reference code does (``sampling='per_sample'``:
    ``K`` per sample, as the reference; ``'shared'``: one set for the batch, the batch
    excluded).  ``NCE`` is the softmax InfoNCE (``InfoNCELoss``, the reference's ``--softmax``)
    or NPID's binary NCE (``NCELoss``, the reference's default; each directed term gets its own
    loss module, hence its own normalising constant ``Z``, as CMC's ``Z_l`` / ``Z_ab``).  With
    ``M = 2`` the two objectives coincide.  The pair terms are SUMMED (the formulas above); each
    directed term is logged as ``nce_{i}to{j}`` (anchor ``i``).

    Defaults (paper / reference code, ImageNet): 128-d embeddings, 16384 negatives, memory
    momentum 0.5, temperature 0.07.

    **Transfer / kNN.** ``self.backbone`` is the encoder of view 0 (the L encoder): tools that
    use ``model.backbone`` (``tools/knn_eval.py``, ``extract_backbone.py``, the kNN hook) see it,
    and the data preprocessor's test mode feeds it view 0.  The other encoders are
    ``self.view_backbones[j - 1]``; :meth:`extract_views` returns every view's pooled feature
    (the paper's linear evaluation concatenates the L and ab features).

    Args:
        backbones: one backbone config per view (``in_channels`` = the view's channel count).
        neck: projection config (e.g. ``LinearNeck`` to 128, no norm), one copy per view, or a
            list of ``M`` configs.
        memory_bank: ``MemoryBank`` config, one bank per view (all of the same size).
        loss: ``InfoNCELoss`` or ``NCELoss`` config (temperature 0.07), one per directed term.
        objective: ``'core'`` or ``'full'``.
        core_view: the core view ``c`` of the core-view objective.
        data_preprocessor: ``CMCDataPreprocessor`` config (the default).
    """

    def __init__(self,
                 backbones: List[dict],
                 neck: Union[dict, List[dict]],
                 memory_bank: dict,
                 loss: dict = dict(type='InfoNCELoss', temperature=0.07),
                 objective: str = 'core',
                 core_view: int = 0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if not isinstance(backbones, (list, tuple)) or len(backbones) < 2:
            raise ValueError('CMC: backbones must be a list of one backbone config per view '
                             f'(at least 2), got {backbones!r:.200}')
        num_views = len(backbones)
        necks = list(neck) if isinstance(neck, (list, tuple)) else [
            copy.deepcopy(neck) for _ in range(num_views)]
        if len(necks) != num_views:
            raise ValueError(f'CMC: {len(necks)} neck configs for {num_views} views')
        if objective not in _OBJECTIVES:
            raise ValueError(f'CMC: objective must be one of {_OBJECTIVES}, got {objective!r}')
        if not 0 <= core_view < num_views:
            raise ValueError(f'CMC: core_view={core_view} is not a view index (0..'
                             f'{num_views - 1})')
        if data_preprocessor is None:
            data_preprocessor = dict(type='CMCDataPreprocessor')
        super().__init__(backbone=backbones[0], neck=necks[0],
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.num_views = num_views
        self._check_views(backbones)
        self.view_backbones = ModuleList(  # mmengine's: init_weights reaches them
            MODELS.build(b) for b in backbones[1:])
        self.view_necks = ModuleList(MODELS.build(n) for n in necks[1:])
        self.memory_banks = nn.ModuleList(
            MODELS.build(copy.deepcopy(memory_bank)) for _ in range(num_views))
        self.objective = objective
        self.core_view = core_view
        if objective == 'core':
            self.pairs = [(core_view, j) for j in range(num_views) if j != core_view]
        else:
            self.pairs = list(combinations(range(num_views), 2))
        loss = dict(loss)
        if loss.get('type') == 'NCELoss':
            if loss.get('num_data') is None:  # |D| follows the bank (None: unsized)
                loss['num_data'] = self.memory_banks[0].length
        # one loss module per directed term (anchor i, bank j): NCE's Z is per direction
        self.losses = nn.ModuleDict()
        for i, j in self.pairs:
            for a, b in ((i, j), (j, i)):
                self.losses[f'{a}to{b}'] = MODELS.build(copy.deepcopy(loss))

    def _check_views(self, backbones: List[dict]) -> None:
        pre = self.data_preprocessor
        if not isinstance(pre, CMCDataPreprocessor):
            return
        if pre.num_views != self.num_views:
            raise ValueError(f'CMC: {self.num_views} backbones but the data preprocessor makes '
                             f'{pre.num_views} views (view_channels={pre.view_channels})')
        for m, (cfg, ch) in enumerate(zip(backbones, pre.view_channels)):
            if isinstance(cfg, dict) and cfg.get('in_channels', 3) != len(ch):
                raise ValueError(
                    f'CMC: view {m} has {len(ch)} channel(s) (view_channels[{m}]={list(ch)}) but '
                    f"backbones[{m}].in_channels={cfg.get('in_channels', 3)}")

    @property
    def encoders(self) -> List[Tuple[nn.Module, nn.Module]]:
        """``(backbone, neck)`` of every view; view 0 is ``(self.backbone, self.neck)``."""
        return [(self.backbone, self.neck)] + list(zip(self.view_backbones, self.view_necks))

    def embed(self, views: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """``z_i = normalize(neck_i(backbone_i(v_i)))`` for every view."""
        return [F.normalize(neck(backbone(v))[0], dim=1)
                for (backbone, neck), v in zip(self.encoders, views)]

    @torch.no_grad()
    def extract_views(self, views: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Globally pooled last-stage features of every view's backbone (``B x C_i`` each)."""
        out = []
        for (backbone, _), v in zip(self.encoders, views):
            feat = backbone(v)[-1]
            out.append(feat.mean(dim=(2, 3)) if feat.ndim == 4 else feat)
        return out

    def pair_terms(self, z: Sequence[torch.Tensor],
                   idx: torch.Tensor) -> Dict[Tuple[int, int], torch.Tensor]:
        """The directed terms ``L_contrast^{i,j}`` (anchor ``z_i``, bank ``j``) of the objective,
        keyed ``(i, j)``.  Does not update the banks."""
        banks = self.memory_banks
        neg_idx = banks[0].sample_indices(idx)  # one draw, used for every bank
        terms = {}
        for i, j in self.pairs:
            for a, b in ((i, j), (j, i)):
                mem = banks[b].get(idx).detach().to(z[a].dtype)
                negs = banks[b].feats[neg_idx].detach().to(z[a].dtype)
                pos = (z[a] * mem).sum(dim=1)
                if negs.ndim == 2:  # shared negatives: one matmul
                    neg = z[a] @ negs.t()
                else:  # per-sample negatives B x K x D
                    neg = torch.einsum('bd,bkd->bk', z[a], negs)
                terms[(a, b)] = self.losses[f'{a}to{b}'](pos, neg)
        return terms

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_views:
            got = f'{len(inputs)} views' if isinstance(inputs, (list, tuple)) else \
                f'a {type(inputs).__name__}'
            raise ValueError(f'CMC expects a list of {self.num_views} views per batch (from '
                             f'CMCDataPreprocessor in training mode), got {got}')
        idx = torch.as_tensor([int(ds.sample_idx) for ds in data_samples],
                              device=inputs[0].device, dtype=torch.long)
        idx = self.memory_banks[0]._check_idx(idx)
        z = self.embed(inputs)
        terms = self.pair_terms(z, idx)
        for bank, z_m in zip(self.memory_banks, z):
            bank.update(idx, z_m.detach())
        out = dict(loss=sum(terms.values()))
        # only 'loss' is optimised; the directed terms are logged (mmengine sums keys with 'loss')
        out.update({f'nce_{a}to{b}': t.detach() for (a, b), t in terms.items()})
        return out
