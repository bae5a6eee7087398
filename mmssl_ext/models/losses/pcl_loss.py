"""PCL's ProtoNCE term and concentration estimate (Li, Zhou, Xiong & Hoi, ICLR 2021)."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssl_ext.registry import MODELS


def pcl_concentration(feats: np.ndarray, assignments: np.ndarray, centroids: np.ndarray,
                      temperature: float) -> np.ndarray:
    r"""The per-prototype concentration ``phi`` of the official ``run_kmeans``.

    For cluster ``c`` with ``Z`` members at distances ``||v_z - c||`` (unnormalised centroid)::

        phi_c = mean_z ||v_z - c|| / log(Z + 10)          Z > 1
        phi_c = max of the phi of the clusters with Z > 1   Z <= 1 (singletons, empty ones)

    then clipped to the 10th..90th percentile of all ``phi`` and scaled so that their mean is
    ``temperature``.

    Args:
        feats: ``N x D`` clustered features; assignments: ``N`` cluster ids; centroids:
            ``K x D`` (the k-means centroids, before any normalisation).
        temperature: the mean concentration after scaling (the InfoNCE temperature).

    Raises:
        ValueError: no cluster has two members (``phi`` is undefined); use fewer clusters.
    """
    feats = np.asarray(feats, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    assignments = np.asarray(assignments, dtype=np.int64)
    k = len(centroids)
    dist = np.linalg.norm(feats - centroids[assignments], axis=1)
    counts = np.bincount(assignments, minlength=k)
    sums = np.bincount(assignments, weights=dist, minlength=k)
    multi = counts > 1
    if not multi.any():
        raise ValueError(f'pcl_concentration: none of the K={k} clusters of N={len(feats)} '
                         f'features has two members; the concentration is undefined (use '
                         f'fewer clusters than num_samples / 2)')
    phi = np.zeros(k)
    phi[multi] = sums[multi] / counts[multi] / np.log(counts[multi] + 10)
    phi[~multi] = phi[multi].max()
    phi = phi.clip(np.percentile(phi, 10), np.percentile(phi, 90))
    return temperature * phi / phi.mean()


@MODELS.register_module()
class ProtoNCELoss(nn.Module):
    r"""ProtoNCE for one set of prototypes, as the official ``MoCo.forward``::

        logits_b = q_b . [c_{s(1)} .. c_{s(B)}, c_{n_1} .. c_{n_r}] / phi_{same columns}
        loss     = mean_b CE(logits_b, b)

    ``s(b)`` is the cluster of sample ``b`` (the positives of the whole batch form the first
    ``B`` columns, so another sample's prototype is a negative too), ``n_1 .. n_r`` are the
    negative prototypes (clusters of no sample of the batch) and ``phi`` the per-prototype
    concentration.
    """

    def forward(self, q: torch.Tensor, pos_ids: torch.Tensor, neg_ids: torch.Tensor,
                prototypes: torch.Tensor, concentration: torch.Tensor) -> torch.Tensor:
        ids = torch.cat([pos_ids, neg_ids])
        logits = q @ prototypes[ids].to(q.dtype).t() / concentration[ids].to(q.dtype)
        target = torch.arange(q.shape[0], device=q.device)
        return F.cross_entropy(logits, target)
