"""LooC's contrastive loss over its ``n + 1`` embedding spaces (Xiao et al., ICLR 2021)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class LooCLoss(nn.Module):
    r"""InfoNCE in the all-invariant space and in each leave-one-out space.

    Views of an image: the query ``q``, the key ``k_0`` (every augmentation drawn anew) and the
    keys ``k_i`` (``i = 1..n``) that share augmentation ``i``'s parameters with ``q`` and draw
    the others anew.  Space ``s = 0`` is invariant to all augmentations, space ``s = i`` to all
    but augmentation ``i``::

        Z_0:  every key is a positive of q:
              L_0 = 1/(n+1) sum_j CE([q.k_j, q.Q_0] / tau, 0)                j = 0..n
        Z_i:  only k_i (same augmentation i as q) is; the other keys of the image, which differ
              from q in augmentation i, are negatives next to the queue:
              L_i = CE([q.k_i, q.k_0, q.k_j (j != 0, i), q.Q_i] / tau, 0)
        loss = 1/(n+1) sum_s L_s

    with ``Q_s`` the space's queue of keys of earlier batches (MoCo) and all embeddings
    L2-normalised.

    Args:
        temperature: ``tau``.

    Shapes (``S = n + 1`` spaces, ``B`` images, ``D`` dimensions, ``K`` queue length):
        query ``(S, B, D)``, keys ``(S, S, B, D)`` (space, key view ``k_0..k_n``, image),
        queues ``(S, D, K)``.
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'LooCLoss: temperature must be positive (got {temperature})')
        self.temperature = float(temperature)

    def forward(self, query: torch.Tensor, keys: torch.Tensor,
                queues: torch.Tensor) -> torch.Tensor:
        s = query.shape[0]
        if keys.shape[:2] != (s, s) or keys.shape[2:] != query.shape[1:]:
            raise ValueError(f'LooCLoss: keys of shape (spaces, key views, B, D) = '
                             f'({s}, {s}, B, D) expected for a query of shape '
                             f'{tuple(query.shape)}; got {tuple(keys.shape)}')
        if queues.shape[0] != s or queues.shape[1] != query.shape[2]:
            raise ValueError(f'LooCLoss: queues of shape ({s}, {query.shape[2]}, K) expected; '
                             f'got {tuple(queues.shape)}')
        # similarities of each query with each key of its own image: (S, S, B)
        own = torch.einsum('sbd,svbd->svb', query, keys)
        # ... and with the space's queue: (S, B, K)
        queued = torch.einsum('sbd,sdk->sbk', query, queues)
        terms = []
        # Z_0: one InfoNCE term per key view as the positive
        for j in range(s):
            logits = torch.cat([own[0, j].unsqueeze(1), queued[0]], dim=1)
            terms.append(self._ce(logits) / s)
        # Z_i: the positive k_i first, then the other keys of the image, then the queue
        for i in range(1, s):
            others = [j for j in range(s) if j != i]
            logits = torch.cat([own[i, i].unsqueeze(1), own[i, others].t(), queued[i]], dim=1)
            terms.append(self._ce(logits))
        return torch.stack(terms).sum() / s

    def _ce(self, logits: torch.Tensor) -> torch.Tensor:
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits / self.temperature, target)
