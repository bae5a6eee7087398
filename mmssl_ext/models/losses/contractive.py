"""The contractive penalty of the contractive auto-encoder (Rifai et al., ICML 2011, "Contractive
Auto-Encoders: Explicit Invariance During Feature Extraction"): the squared Frobenius norm of the
Jacobian of the code ``h`` with respect to the encoder's input, per sample."""
from typing import Optional

import torch
import torch.nn as nn

from mmssl_ext.registry import MODELS

ACTIVATIONS = ('sigmoid', 'linear')


def code_layer_jacobian_sq(code: torch.Tensor, weight: torch.Tensor,
                           activation: str = 'sigmoid') -> torch.Tensor:
    """Exact ``||dh/df||_F^2`` per sample of a code layer ``h = act(W f + b)`` (``code``:
    ``B x J``, ``weight``: ``J x D``), the paper's closed form (eq. 5 for the sigmoid)::

        sigmoid: sum_j (h_j (1 - h_j))^2 sum_i W_ji^2        linear: sum_ji W_ji^2
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f'code_layer_jacobian_sq: activation must be one of {ACTIVATIONS}, '
                         f'got {activation!r}')
    if code.ndim != 2 or weight.ndim != 2 or weight.shape[0] != code.shape[1]:
        raise ValueError(f'code_layer_jacobian_sq: code must be B x J and weight J x D, got '
                         f'{tuple(code.shape)} and {tuple(weight.shape)}')
    row_sq = weight.pow(2).sum(dim=1)  # J
    if activation == 'linear':
        return row_sq.sum().expand(code.shape[0])
    return (code * (1 - code)).pow(2) @ row_sq


def input_jacobian_sq(code: torch.Tensor, inputs: torch.Tensor, num_projections: int = 1,
                      exact: bool = False, create_graph: bool = True) -> torch.Tensor:
    """``||dh/dx||_F^2`` per sample through a whole (deep) encoder, from vector-Jacobian
    products (one backward pass each; ``inputs`` must require grad and ``code`` depend on it).

    ``exact=False``: the random-projection (Hutchinson) estimate
    ``mean_k ||J^T u_k||^2`` with ``u_k ~ N(0, I_J)``: unbiased, since
    ``E[u^T J J^T u] = tr(J J^T) = ||J||_F^2``.  ``exact=True``: ``sum_j ||J^T e_j||^2``, one
    pass per code unit (for small codes and tests).  Gradients of the code of sample ``b`` with
    respect to the other samples' inputs (batch-statistics BatchNorm couples them) are summed
    into those samples' rows, a term that shrinks with the batch size.
    """
    if code.ndim != 2 or not inputs.requires_grad:
        raise ValueError('input_jacobian_sq: code must be B x J and computed from inputs that '
                         'require grad (inputs.requires_grad_() before the encoder)')
    if num_projections < 1:
        raise ValueError(f'input_jacobian_sq: num_projections must be >= 1, '
                         f'got {num_projections}')
    if exact:
        eye = torch.eye(code.shape[1], dtype=code.dtype, device=code.device)
        directions = [eye[j].expand_as(code) for j in range(code.shape[1])]
    else:
        directions = [torch.randn_like(code) for _ in range(num_projections)]
    total = code.new_zeros(code.shape[0])
    for u in directions:
        (g, ) = torch.autograd.grad(code, inputs, grad_outputs=u, create_graph=create_graph,
                                    retain_graph=True)
        total = total + g.pow(2).flatten(1).sum(dim=1)
    return total if exact else total / len(directions)


@MODELS.register_module()
class ContractivePenalty(nn.Module):
    """``loss_weight * mean_b ||J_b||_F^2``, the CAE's penalty (the paper's lambda).

    Modes (which Jacobian, and how):

    - ``'input'``: of the code with respect to the image, through the whole encoder, by the
      random-projection estimate of :func:`input_jacobian_sq` with ``num_projections`` draws
      (exact for a one-layer encoder only in expectation; the paper's quantity for a deep one).
    - ``'input_exact'``: the same Jacobian, exactly (one backward pass per code unit).
    - ``'code_layer'``: of the code with respect to the code layer's input (the pooled backbone
      features), by the closed form :func:`code_layer_jacobian_sq`; exact and cheap, but the
      backbone (what transfers) is not made contractive by it.

    Args:
        mode (str): See above. Defaults to ``'input'``.
        num_projections (int): Draws of the ``'input'`` estimate. Defaults to 1.
        loss_weight (float): lambda, >= 0. Defaults to 0.1.
    """

    MODES = ('input', 'input_exact', 'code_layer')

    def __init__(self, mode: str = 'input', num_projections: int = 1,
                 loss_weight: float = 0.1) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f'ContractivePenalty: mode must be one of {self.MODES}, '
                             f'got {mode!r}')
        if isinstance(num_projections, bool) or not isinstance(num_projections, int) \
                or num_projections < 1:
            raise ValueError(f'ContractivePenalty: num_projections must be an int >= 1, '
                             f'got {num_projections!r}')
        if not float(loss_weight) >= 0:
            raise ValueError(f'ContractivePenalty: loss_weight must be >= 0, '
                             f'got {loss_weight!r}')
        self.mode = mode
        self.num_projections = num_projections
        self.loss_weight = float(loss_weight)

    @property
    def needs_input_grad(self) -> bool:
        return self.mode != 'code_layer'

    def jacobian_sq(self, code: torch.Tensor, inputs: Optional[torch.Tensor] = None,
                    weight: Optional[torch.Tensor] = None,
                    activation: str = 'sigmoid') -> torch.Tensor:
        """Per-sample ``||J||_F^2`` (``B``) of the configured mode."""
        if self.mode == 'code_layer':
            if weight is None:
                raise ValueError("ContractivePenalty(mode='code_layer') needs the code layer's "
                                 'weight')
            return code_layer_jacobian_sq(code, weight, activation)
        if inputs is None:
            raise ValueError(f'ContractivePenalty(mode={self.mode!r}) needs the encoder input')
        return input_jacobian_sq(code, inputs, self.num_projections,
                                 exact=self.mode == 'input_exact')

    def forward(self, code: torch.Tensor, inputs: Optional[torch.Tensor] = None,
                weight: Optional[torch.Tensor] = None,
                activation: str = 'sigmoid') -> torch.Tensor:
        return self.loss_weight * self.jacobian_sq(code, inputs, weight, activation).mean()

    def extra_repr(self) -> str:
        return (f'mode={self.mode!r}, num_projections={self.num_projections}, '
                f'loss_weight={self.loss_weight}')
