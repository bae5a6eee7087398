"""CPC's autoregressive context network over a grid of patch vectors (top-to-bottom, row-causal)."""
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssl_ext.registry import MODELS


class RowCausalConv2d(nn.Conv2d):
    """A convolution whose output at row ``r`` depends on input rows ``<= r`` only.

    The input is padded with ``kh - 1`` zero rows at the TOP (none at the bottom) and
    ``(kw - 1) / 2`` zero columns left and right, then convolved without padding: output row
    ``r`` sees input rows ``r - kh + 1 .. r`` (the current row and ``kh - 1`` rows above),
    columns ``c - (kw - 1) / 2 .. c + (kw - 1) / 2``; the output has the input's size.  This is
    PixelCNN's vertically masked kernel (a ``(2 kh - 1) x kw`` kernel whose rows below the centre
    are zero) without the wasted zero weights.

    Args:
        in_channels, out_channels: as ``nn.Conv2d``.
        kernel_size: ``(kh, kw)`` with ``kw`` odd (an int ``k`` means ``(k, k)``).
    """

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: Union[int, Sequence[int]] = (2, 3), bias: bool = True):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if kh < 1 or kw < 1 or kw % 2 != 1:
            raise ValueError(f'RowCausalConv2d: kernel_size must be (kh >= 1, odd kw), got '
                             f'{kernel_size!r}')
        super().__init__(in_channels, out_channels, (kh, kw), padding=0, bias=bias)
        self._pad = ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self._pad))


class _CausalResBlock(nn.Module):
    """``x + conv1x1(relu(causal(relu(conv1x1(relu(x))))))``: a bottleneck residual block whose
    only spatial mixing is the row-causal convolution."""

    def __init__(self, channels: int, hidden: int, kernel_size: Tuple[int, int]):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.causal = RowCausalConv2d(hidden, hidden, kernel_size)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reduce(F.relu(x))
        h = self.causal(F.relu(h))
        return x + self.expand(F.relu(h))


@MODELS.register_module()
class CPCContextNetwork(nn.Module):
    """PixelCNN-style context network ``g`` of CPC: ``c = g(z)`` on a ``B x D x R x C`` grid.

    ``c[:, :, r, col]`` summarises the patch vectors ``z[:, :, u, v]`` of rows ``u <= r`` (all
    columns within the receptive field): a 1x1 input projection ``D -> channels``, then
    ``num_blocks`` residual bottleneck blocks (``channels -> channels / 2 -> channels``) whose
    spatial convolution is a :class:`RowCausalConv2d` with ``kernel_size`` (default ``(2, 3)``:
    the current row and the row above, 3 columns), then ReLU.  Each block adds ``kh - 1`` rows
    of upward receptive field.  No normalisation layer (nothing mixes samples or rows).

    Args:
        in_channels: ``D``, the dimension of the patch vectors.
        channels: width of the context vectors ``c``.
        num_blocks: number of residual blocks (>= 1).
        kernel_size: the causal kernel ``(kh, kw)``.

    Shapes:
        input: ``B x D x R x C`` (or a tuple whose last item is that, as backbones return);
        output: ``B x channels x R x C``.
    """

    def __init__(self, in_channels: int, channels: int = 256, num_blocks: int = 3,
                 kernel_size: Union[int, Sequence[int]] = (2, 3)):
        super().__init__()
        if in_channels < 1 or channels < 2 or num_blocks < 1:
            raise ValueError('CPCContextNetwork: need in_channels >= 1, channels >= 2 and '
                             f'num_blocks >= 1, got {in_channels}, {channels}, {num_blocks}')
        kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else \
            tuple(kernel_size)
        self.in_channels = in_channels
        self.channels = channels
        self.proj = nn.Conv2d(in_channels, channels, 1)
        self.blocks = nn.Sequential(
            *[_CausalResBlock(channels, channels // 2, kernel_size) for _ in range(num_blocks)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if isinstance(z, (tuple, list)):
            z = z[-1]
        if z.ndim != 4 or z.shape[1] != self.in_channels:
            raise ValueError(f'CPCContextNetwork expects a B x {self.in_channels} x R x C grid, '
                             f'got {tuple(z.shape)}')
        return F.relu(self.blocks(self.proj(z)))
