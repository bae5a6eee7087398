"""CIE Lab colour space and the quantised ab output space of Colorization (Zhang et al. 2016).

* :func:`rgb_to_lab` / :func:`lab_to_rgb`: batched, differentiable, any device and float dtype.
  ``B x 3 x H x W`` sRGB in ``[0, 1]`` <-> CIE Lab (``L`` in ``[0, 100]``, ``a``/``b`` roughly
  ``[-86, 98]`` / ``[-108, 95]`` for sRGB colours): sRGB companding, the sRGB -> XYZ matrix and
  the D65 white point ``(0.950456, 1, 1.088754)`` (the matrix's row sums, so white maps to exactly
  ``(100, 0, 0)``; these are OpenCV's and skimage's constants up to rounding).
* :class:`ABQuantizer`: the ``Q`` in-gamut cells of a grid of size 10 over ab, the soft target
  of the paper (5 nearest bins, Gaussian weights, sigma 5), the nearest bin, the annealed-mean
  decoding (T = 0.38) and the class-rebalancing weights.

The bins: cells ``[c - g/2, c + g/2)^2`` with centres ``c`` on multiples of ``g`` that contain the
ab value of at least one sRGB colour.  They are computed, deterministically, by converting the
surface of the RGB cube (128 x 128 samples per face; the ab projection of the gamut solid is the
projection of its surface) to Lab: ``Q = 262`` for ``g = 10`` (the same set as with 1024 or 2048
samples per face).  Zhang et al. ship 313 bins (``pts_in_hull.npy``), a larger region than the
sRGB gamut; with this conversion the stricter "cell centre reachable by an sRGB colour" gives 229
cells and the "centre inside the convex hull of the gamut" 233.  Every sRGB colour's own cell is a
bin, so its hard encoding is off by at most ``g / sqrt(2)``.
"""
import functools
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# sRGB (linear) -> XYZ, D65 (IEC 61966-2-1, as in OpenCV / skimage)
_RGB2XYZ = ((0.412453, 0.357580, 0.180423),
            (0.212671, 0.715160, 0.072169),
            (0.019334, 0.119193, 0.950227))
_DELTA = 6.0 / 29.0
_GAMUT_SAMPLES = 128  # samples per edge of each RGB cube face when finding the in-gamut cells


def _matrix(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(_RGB2XYZ, dtype=torch.float64).to(device=device, dtype=dtype)


def _white(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(_RGB2XYZ, dtype=torch.float64).sum(1).to(device=device, dtype=dtype)


def _check_image(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f'{name} expects a B x 3 x H x W tensor, got {shape}')
    if not x.is_floating_point():
        raise TypeError(f'{name} expects a floating point tensor, got {x.dtype}')


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``B x 3 x H x W`` sRGB in ``[0, 1]`` -> CIE Lab ``B x 3 x H x W`` (L, a, b)."""
    _check_image(rgb, 'rgb_to_lab')
    lin = torch.where(rgb > 0.04045, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4,
                      rgb / 12.92)
    xyz = torch.einsum('ij,bjhw->bihw', _matrix(rgb.dtype, rgb.device), lin)
    xyz = xyz / _white(rgb.dtype, rgb.device).view(1, 3, 1, 1)
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp(min=_DELTA ** 3) ** (1.0 / 3.0),
                    xyz / (3 * _DELTA ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """CIE Lab ``B x 3 x H x W`` -> sRGB ``B x 3 x H x W``, clipped to ``[0, 1]`` by default
    (out-of-gamut Lab values have no sRGB colour; ``clip=False`` returns the unclipped values)."""
    _check_image(lab, 'lab_to_rgb')
    L, a, b = lab.unbind(1)
    fy = (L + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], dim=1)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4.0 / 29.0))
    xyz = xyz * _white(lab.dtype, lab.device).view(1, 3, 1, 1)
    inv = torch.linalg.inv(torch.tensor(_RGB2XYZ, dtype=torch.float64))
    lin = torch.einsum('ij,bjhw->bihw', inv.to(device=lab.device, dtype=lab.dtype), xyz)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055,
                      12.92 * lin)
    return rgb.clamp(0.0, 1.0) if clip else rgb


def packed_images_to_lab(img: torch.Tensor, swap_rb: bool, who: str) -> torch.Tensor:
    """A packed uint8 image batch (``B x 3 x H x W`` in ``[0, 255]``, BGR if ``swap_rb``, or
    ``B x 1 x H x W`` gray taken as R = G = B) as CIE Lab ``B x 3 x H x W``.

    The shared first step of the data preprocessors that feed Lab channels to a backbone
    (Colorization, CMC); ``who`` names the caller in the error for any other input.
    """
    if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[1] not in (1, 3):
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else f'a {type(img).__name__}'
        raise ValueError(f'{who} expects one image view per sample, a B x 3 (or 1) x H x W '
                         f'batch, got {shape}')
    if img.shape[1] == 1:
        img = img.expand(-1, 3, -1, -1)
    elif swap_rb:
        img = img[:, [2, 1, 0], ...]
    return rgb_to_lab((img.float() / 255.0).clamp(0.0, 1.0))


@functools.lru_cache(maxsize=8)
def in_gamut_ab_bins(grid_size: float = 10.0) -> Tuple[Tuple[float, float], ...]:
    """Centres ``(a, b)`` of the ab grid cells (size ``grid_size``, centres on its multiples)
    that hold at least one sRGB colour, sorted by ``(a, b)``."""
    if not grid_size > 0:
        raise ValueError(f'grid_size must be > 0, got {grid_size}')
    g = torch.linspace(0.0, 1.0, _GAMUT_SAMPLES, dtype=torch.float64)
    u, v = (t.flatten() for t in torch.meshgrid(g, g, indexing='ij'))
    faces = []
    for axis in range(3):
        others = [i for i in range(3) if i != axis]
        for value in (0.0, 1.0):
            face = torch.empty(len(u), 3, dtype=torch.float64)
            face[:, axis] = value
            face[:, others[0]] = u
            face[:, others[1]] = v
            faces.append(face)
    rgb = torch.cat(faces).t().reshape(1, 3, -1, 1)
    ab = rgb_to_lab(rgb)[0, 1:, :, 0].t()
    cells = torch.unique(torch.round(ab / grid_size).long(), dim=0)  # sorted lexicographically
    return tuple((float(a) * grid_size, float(b) * grid_size) for a, b in cells.tolist())


class ABQuantizer(nn.Module):
    """The quantised ab output space: ``Q`` in-gamut bins of a ``grid_size`` grid.

    * ``encode_soft(ab)``: the paper's soft target ``Z``: the ``num_neighbours`` (5) nearest bin
      centres ``c_q`` of each pixel's ``ab``, weighted ``exp(-|ab - c_q|^2 / (2 sigma^2))``
      (sigma 5) and normalised to sum 1; ``B x 2 x H x W`` -> ``B x Q x H x W``.
    * ``encode_hard(ab)``: index of the nearest bin, ``B x H x W`` (long).
    * ``decode(z, temperature=0.38)``: annealed mean ``sum_q c_q f_T(z)_q`` with
      ``f_T(p) = exp(log p / T) / sum exp(log p / T)`` (``T = 1``: mean, ``T -> 0``: mode).
    * ``rebalance_weights(prior)``: ``w = ((1 - lam) p~ + lam / Q)^-1`` normalised so that
      ``sum_q p~_q w_q = 1``, with ``p~`` the prior smoothed by a Gaussian (sigma 5) over the
      bin centres: ``p~ = normalise(K p)``, ``K_qr = exp(-|c_q - c_r|^2 / (2 sigma^2))``.

    The bin centres and the smoothing kernel are non-persistent buffers (they follow
    ``.to(device)`` and are not saved: they are a function of the arguments).

    Example:
        >>> q = ABQuantizer()
        >>> q.num_bins
        262
        >>> ab = torch.zeros(1, 2, 4, 4)                    # neutral grey
        >>> q.centres[q.encode_hard(ab)[0, 0, 0]]
        tensor([0., 0.])
    """

    def __init__(self, grid_size: float = 10.0, num_neighbours: int = 5, sigma: float = 5.0,
                 prior_sigma: float = 5.0):
        super().__init__()
        if not grid_size > 0:
            raise ValueError(f'ABQuantizer: grid_size must be > 0, got {grid_size}')
        if not sigma > 0 or not prior_sigma > 0:
            raise ValueError(f'ABQuantizer: sigma and prior_sigma must be > 0, got {sigma} and '
                             f'{prior_sigma}')
        centres = torch.tensor(in_gamut_ab_bins(float(grid_size)), dtype=torch.float32)
        if not 1 <= num_neighbours <= len(centres):
            raise ValueError(f'ABQuantizer: num_neighbours must be in [1, {len(centres)}], '
                             f'got {num_neighbours}')
        self.grid_size = float(grid_size)
        self.num_neighbours = int(num_neighbours)
        self.sigma = float(sigma)
        self.prior_sigma = float(prior_sigma)
        self.register_buffer('centres', centres, persistent=False)
        d2 = torch.cdist(centres.double(), centres.double()) ** 2
        self.register_buffer('kernel', torch.exp(-d2 / (2 * prior_sigma ** 2)).float(),
                             persistent=False)

    @property
    def num_bins(self) -> int:
        return len(self.centres)

    def _check_ab(self, ab: torch.Tensor) -> None:
        if not isinstance(ab, torch.Tensor) or ab.ndim != 4 or ab.shape[1] != 2:
            shape = tuple(ab.shape) if isinstance(ab, torch.Tensor) else type(ab).__name__
            raise ValueError(f'ABQuantizer expects ab as a B x 2 x H x W tensor, got {shape}')

    def _nearest(self, ab: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Squared distances and indices (``N x k``, nearest first) of the ``k`` nearest bins."""
        x = ab.detach().float().permute(0, 2, 3, 1).reshape(-1, 2)
        c = self.centres.to(x.device)
        d2 = ((x * x).sum(1, keepdim=True) - 2 * x @ c.t() + (c * c).sum(1)).clamp(min=0)
        dist, idx = d2.topk(k, dim=1, largest=False, sorted=True)
        return dist, idx

    @torch.no_grad()
    def encode_hard(self, ab: torch.Tensor) -> torch.Tensor:
        self._check_ab(ab)
        b, _, h, w = ab.shape
        return self._nearest(ab, 1)[1].view(b, h, w)

    @torch.no_grad()
    def encode_soft(self, ab: torch.Tensor) -> torch.Tensor:
        self._check_ab(ab)
        b, _, h, w = ab.shape
        dist, idx = self._nearest(ab, self.num_neighbours)
        weights = torch.softmax(-dist / (2 * self.sigma ** 2), dim=1)  # = normalised Gaussians
        z = torch.zeros(dist.shape[0], self.num_bins, device=dist.device, dtype=dist.dtype)
        z.scatter_(1, idx, weights)
        return z.view(b, h, w, self.num_bins).permute(0, 3, 1, 2).contiguous()

    def decode(self, z: torch.Tensor, temperature: float = 0.38,
               from_logits: bool = True) -> torch.Tensor:
        """``B x Q x H x W`` logits (or probabilities, ``from_logits=False``) -> ``B x 2 x H x W``
        ab by the annealed mean at ``temperature``."""
        if z.ndim != 4 or z.shape[1] != self.num_bins:
            raise ValueError(f'ABQuantizer.decode expects B x {self.num_bins} x H x W, got '
                             f'{tuple(z.shape)}')
        if not temperature > 0:
            raise ValueError(f'ABQuantizer.decode: temperature must be > 0, got {temperature}')
        log_p = F.log_softmax(z.float(), 1) if from_logits else z.float().clamp(min=1e-12).log()
        p = torch.softmax(log_p / temperature, dim=1)
        return torch.einsum('bqhw,qc->bchw', p, self.centres.to(p.device))

    def smooth_prior(self, prior: torch.Tensor) -> torch.Tensor:
        """``p~ = normalise(K p)``: the normalised prior smoothed over the bin centres."""
        prior = torch.as_tensor(prior, device=self.kernel.device).double()
        if prior.shape != (self.num_bins, ):
            raise ValueError(f'prior must have shape ({self.num_bins},), got {tuple(prior.shape)}')
        if (prior < 0).any() or not prior.sum() > 0:
            raise ValueError('prior must be non-negative with a positive sum (bin counts or '
                             f'probabilities), got sum {float(prior.sum())}')
        smoothed = self.kernel.double() @ (prior / prior.sum())
        return smoothed / smoothed.sum()

    def rebalance_weights(self, prior: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
        """Class-rebalancing weights ``w`` (``Q``, float32) from a prior (counts or
        probabilities over the bins), ``lam`` the weight of the uniform mixture (0.5)."""
        if not 0.0 < lam <= 1.0:  # lam = 0 would give infinite weights to unseen bins
            raise ValueError(f'rebalance lambda must be in (0, 1], got {lam}')
        p = self.smooth_prior(prior)
        w = 1.0 / ((1.0 - lam) * p + lam / self.num_bins)
        return (w / (p * w).sum()).float()

    def extra_repr(self) -> str:
        return (f'num_bins={self.num_bins}, grid_size={self.grid_size}, '
                f'num_neighbours={self.num_neighbours}, sigma={self.sigma}, '
                f'prior_sigma={self.prior_sigma}')
