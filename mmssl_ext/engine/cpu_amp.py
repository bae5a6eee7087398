"""Mixed precision and memory layout on the CPU: bfloat16 autocast and channels_last.

mmengine's ``AmpOptimWrapper`` refuses to be built without a GPU (its ``__init__`` asserts CUDA /
NPU / MLU / MUSA) and always builds ``torch.cuda.amp``'s ``GradScaler``.  On the CPU, autocast
runs in bfloat16 only (mmengine's ``autocast(device_type='cpu')`` asserts it), and bfloat16 has
float32's exponent range, so no loss scaling is needed: :class:`CPUAmpOptimWrapper` is mmengine's
``OptimWrapper`` (same state dict, so resume and checkpoints are unchanged) whose
``optim_context`` runs the forward under ``autocast('cpu', bfloat16)`` (strided convolutions
on 1-pixel inputs in float32: :func:`guard_strided_convs_on_1px_inputs`).

channels_last (NHWC) is a config key, ``channels_last = True`` (or ``tools/train.py
--channels-last``): :class:`~mmssl_ext.engine.runner.SSLRunner` converts the model's parameters
and every image tensor the data preprocessor hands to the model (:func:`use_channels_last`).
"""
from contextlib import contextmanager
from typing import Tuple

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast

from mmssl_ext.registry import OPTIM_WRAPPERS

__all__ = ['CPUAmpOptimWrapper', 'channels_last_tensors', 'cpu_bf16_support',
           'guard_strided_convs_on_1px_inputs', 'use_channels_last']


def cpu_bf16_support() -> Tuple[bool, str]:
    """``(supported, why)``: whether this processor runs bfloat16 natively (oneDNN's check:
    AVX-512 BF16 or AMX; without them autocast still runs, emulated and slower than float32)."""
    if not torch.backends.mkldnn.is_available():
        return False, 'this torch build has no oneDNN (mkldnn) backend'
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError) as e:  # private op: absent in some builds
        return False, f'torch cannot tell whether the processor supports bfloat16 ({e})'
    if not native:
        return False, 'the processor has neither AVX-512 BF16 nor AMX (oneDNN bf16 check)'
    amx = getattr(torch.cpu, '_is_amx_tile_supported', lambda: False)()
    return True, 'oneDNN bfloat16 kernels' + (' with AMX tiles' if amx else ' (AVX-512 BF16)')


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under ``torch.autocast('cpu', dtype)``.

    Args:
        dtype (str | torch.dtype): the autocast dtype; only ``'bfloat16'`` (what CPU autocast
            supports).
        **kwargs: ``OptimWrapper``'s arguments.
    """

    def __init__(self, dtype='bfloat16', **kwargs) -> None:
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, dtype)
        if dtype is not torch.bfloat16:
            raise ValueError(f'CPUAmpOptimWrapper: dtype={dtype!r} is not supported; CPU '
                             f'autocast runs in bfloat16 only (optim_wrapper.dtype='
                             f"'bfloat16'; float16 AMP needs a GPU and AmpOptimWrapper)")
        super().__init__(**kwargs)
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        if not getattr(model, '_mmssl_bf16_conv_guard', False):
            guard_strided_convs_on_1px_inputs(model)
            model._mmssl_bf16_conv_guard = True
        with super().optim_context(model), autocast(device_type='cpu', dtype=self.cast_dtype):
            yield


def _float32_pre_hook(module: nn.Module, args):
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and x.dim() == 4 and min(x.shape[-2:]) == 1 and \
            torch.is_autocast_enabled('cpu'):
        ctx = torch.autocast('cpu', enabled=False)
        ctx.__enter__()
        module._mmssl_fp32_ctx = ctx
        return (x.float(), *args[1:])
    return None


def _float32_post_hook(module: nn.Module, _args, _output) -> None:
    ctx = module.__dict__.pop('_mmssl_fp32_ctx', None)
    if ctx is not None:
        ctx.__exit__(None, None, None)


def guard_strided_convs_on_1px_inputs(model: nn.Module) -> int:
    """Run each strided ``Conv2d`` of ``model`` in float32 when its input is 1 pixel high or wide
    under CPU autocast: oneDNN's bfloat16 kernel then returns non-finite weight gradients at
    random (e.g. a ResNet's last stage on 16 px patches through the ImageNet stem).  Returns the
    number of convolutions guarded."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and max(m.stride) > 1:
            m.register_forward_pre_hook(_float32_pre_hook)
            m.register_forward_hook(_float32_post_hook)
            n += 1
    return n


def channels_last_tensors(x):
    """``x`` with every tensor of 4 or more dimensions (also inside lists, tuples and dicts)
    stored channels-last: the ``C x H x W`` of each image as ``H x W x C`` (for ``N x C x H x W``
    exactly ``torch.channels_last``; for PIRL's ``B x 9 x C x h x w`` patches too, so that their
    ``flatten(0, 1)`` is a channels_last batch)."""
    if isinstance(x, torch.Tensor):
        return x.movedim(-3, -1).contiguous().movedim(-1, -3) if x.dim() >= 4 else x
    if isinstance(x, (list, tuple)):
        return type(x)(channels_last_tensors(v) for v in x)
    if isinstance(x, dict):
        return {k: channels_last_tensors(v) for k, v in x.items()}
    return x


def _channels_last_inputs(_module, _args, output):
    if isinstance(output, dict) and 'inputs' in output:
        output['inputs'] = channels_last_tensors(output['inputs'])
    return output


def use_channels_last(model: nn.Module) -> nn.Module:
    """Convert ``model`` (its parameters and buffers, in place) to channels_last and make its
    data preprocessor hand channels_last inputs to the forward; returns ``model``."""
    model.to(memory_format=torch.channels_last)
    preprocessor = getattr(model, 'data_preprocessor', None)
    if isinstance(preprocessor, nn.Module) and \
            not getattr(preprocessor, '_mmssl_channels_last', False):
        preprocessor.register_forward_hook(_channels_last_inputs)
        preprocessor._mmssl_channels_last = True
    return model
