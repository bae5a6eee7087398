"""What every zoo converter shares: safe loading of a source file or URL, the refusal of
unrecognised layouts, the architecture a state dict describes, and atomic output files."""
import functools
import io
import os
import os.path as osp
import re
import warnings
from collections import OrderedDict
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import torch

from mmssl_ext.utils.checkpoint import CheckpointLoadError, load_checkpoint_safe
from mmssl_ext.utils.fileio import atomic_write

__all__ = ['ZooFormatError', 'CheckpointLoadError', 'load_source', 'save_converted',
           'resnet_cfg', 'vit_cfg', 'add_prefix', 'layout_error', 'TRUST_FLAG_HELP']

#: the CLIs' flag that switches safe loading off for one file, and what it risks
TRUST_FLAG_HELP = ('load SRC with full pickle (torch.load weights_only=False): ARBITRARY CODE in '
                   'the file RUNS on load. Only for a file from a source you trust whose format '
                   'needs objects outside the safe allow-list')

#: torchvision / mmpretrain ResNet block counts per stage -> (depth, block)
RESNET_DEPTHS = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}


class ZooFormatError(ValueError):
    """A file is not in a layout the converter accepts; the message lists the accepted ones."""


def is_url(path: str) -> bool:
    return path.startswith(('http://', 'https://'))


def local_copy(path_or_url: str) -> str:
    """A local file for ``path_or_url``: the path itself, or a URL downloaded (once) into torch
    hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``), as mmengine's ``http://`` loader."""
    if not is_url(path_or_url):
        return path_or_url
    name = osp.basename(path_or_url.split('?', 1)[0]) or 'checkpoint.pth'
    cache = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(cache, exist_ok=True)
    dst = osp.join(cache, name)
    if not osp.isfile(dst):  # download_url_to_file writes a temporary file, then renames it
        torch.hub.download_url_to_file(path_or_url, dst, progress=False)
    return dst


def load_source(path_or_url: str, trust_code: bool = False,
                extra_safe: Sequence[Any] = ()) -> Any:
    """Load a source checkpoint with torch's weights-only loader and mmssl_ext's allow-list
    (plus ``extra_safe`` data-only classes a format needs, e.g. DINO's ``argparse.Namespace``).

    ``trust_code=True`` loads with full pickle instead, with a warning naming the risk.
    Raises :class:`CheckpointLoadError` for a truncated file or one holding other objects.
    """
    path = local_copy(str(path_or_url))
    if trust_code:
        warnings.warn(f'loading {path} with full pickle (weights_only=False): code in the file '
                      'runs; do this only for files you trust', stacklevel=2)
        return torch.load(path, map_location='cpu', weights_only=False)
    with torch.serialization.safe_globals(list(extra_safe)):
        return load_checkpoint_safe(path)


def layout_error(source: str, ckpt: Any, accepted: Iterable[str], what: str) -> ZooFormatError:
    """The error for a file ``what`` does not recognise: the layouts it accepts, what was found."""
    if isinstance(ckpt, dict):
        keys = list(ckpt)
        found = f'a dict with keys {keys[:8]}{" ..." if len(keys) > 8 else ""}'
    else:
        found = f'a {type(ckpt).__name__}'
    lines = '\n'.join(f'  - {a}' for a in accepted)
    return ZooFormatError(f'{source} is not a {what} checkpoint this converter knows; it holds '
                          f'{found}. Accepted layouts:\n{lines}')


def add_prefix(state: Dict[str, Any], prefix: str) -> 'OrderedDict[str, Any]':
    return OrderedDict((prefix + k, v) for k, v in state.items())


def tensors(state: Dict[str, Any]) -> 'OrderedDict[str, torch.Tensor]':
    return OrderedDict((k, v) for k, v in state.items() if torch.is_tensor(v))


def resnet_cfg(state: Dict[str, Any]) -> Optional[dict]:
    """The mmpretrain ``ResNet`` config whose state dict ``state`` is (torchvision's and
    mmpretrain's ResNet keys are the same), or None when ``state`` is not a ResNet.

    Widths: VISSL's ``WIDTH_MULTIPLIER`` w scales the stem and every stage's bottleneck width
    by w, which is mmpretrain's ``stem_channels=base_channels=64 * w``. Grouped convolutions
    (ResNeXt) and depth 200 (no mmpretrain arch) are refused with a message.
    """
    if 'conv1.weight' not in state or 'layer1.0.conv1.weight' not in state:
        return None
    counts = []
    for stage in range(1, 5):
        idx = {int(m.group(1)) for k in state
               for m in [re.match(rf'layer{stage}\.(\d+)\.', k)] if m}
        counts.append(len(idx))
    bottleneck = 'layer1.0.conv3.weight' in state
    depth = RESNET_DEPTHS.get(tuple(counts))
    if depth == 50 and not bottleneck:
        depth = 34
    if depth is None or (depth == 18 and bottleneck):
        raise ZooFormatError(f'a ResNet with {counts} blocks per stage '
                             f'({"Bottleneck" if bottleneck else "BasicBlock"}) has no '
                             'mmpretrain ResNet depth (supported: 18, 34, 50, 101, 152)')
    conv2 = state['layer1.0.conv2.weight']
    if conv2.shape[1] != conv2.shape[0]:
        raise ZooFormatError('grouped 3x3 convolutions (ResNeXt) are not supported; only '
                             'ResNets with groups=1 (any width multiplier)')
    stem = int(state['conv1.weight'].shape[0])
    base = int(state['layer1.0.conv1.weight'].shape[0])
    cfg = dict(type='ResNet', depth=depth, in_channels=int(state['conv1.weight'].shape[1]))
    if stem != 64 or base != 64:
        cfg.update(stem_channels=stem, base_channels=base)
    return cfg


def vit_cfg(state: Dict[str, Any]) -> Optional[dict]:
    """The mmpretrain ``VisionTransformer`` config of an mmpretrain-keyed ViT state dict, or
    None. The number of heads is not in the weights: 64 channels per head (ViT-S/B/L, DINO)."""
    if 'cls_token' not in state or 'layers.0.attn.qkv.weight' not in state:
        return None
    dims = int(state['cls_token'].shape[-1])
    layers = len({int(m.group(1)) for k in state for m in [re.match(r'layers\.(\d+)\.', k)] if m})
    patch = int(state['patch_embed.projection.weight'].shape[-1])
    side = int(round((state['pos_embed'].shape[1] - 1) ** 0.5))
    arch = dict(embed_dims=dims, num_layers=layers, num_heads=max(dims // 64, 1),
                feedforward_channels=int(state['layers.0.ffn.layers.0.0.weight'].shape[0]))
    return dict(type='VisionTransformer', arch=arch, img_size=side * patch, patch_size=patch,
                in_channels=int(state['patch_embed.projection.weight'].shape[1]),
                out_type='cls_token', final_norm='ln1.weight' in state)


def backbone_cfg(state: Dict[str, Any]) -> Optional[dict]:
    """:func:`resnet_cfg` or :func:`vit_cfg` of an mmpretrain-keyed backbone state dict."""
    return resnet_cfg(state) or vit_cfg(state)


@functools.lru_cache(maxsize=8)
def _backbone_shapes(cfg_items: tuple) -> Dict[str, torch.Size]:
    """Key -> shape of the mmpretrain backbone a (hashable) config describes."""
    from mmpretrain.models import ResNet, VisionTransformer
    kwargs = {k: v for k, v in cfg_items if k != 'type'}
    kwargs = {k: (dict(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    cls = ResNet if dict(cfg_items)['type'] == 'ResNet' else VisionTransformer
    return {k: v.shape for k, v in cls(**kwargs).state_dict().items()}


def check_backbone(body: Dict[str, torch.Tensor], cfg: dict, source: str) -> None:
    """Refuse ``body`` unless it fills the mmpretrain backbone ``cfg`` describes exactly (the
    keys and shapes ``PretrainedCheckHook`` will compare)."""
    from mmssl_ext.utils.checkpoint import check_keys
    items = tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                         for k, v in cfg.items()))
    own = {k: torch.empty(shape, device='meta') for k, shape in _backbone_shapes(items).items()}
    report = check_keys(own, body, model_name=f'mmpretrain {cfg["type"]}')
    if any(report.values()):
        raise ZooFormatError(
            f'{source}: the weights do not fill an mmpretrain {cfg} exactly: '
            f'missing {report["missing"][:4]}, unexpected {report["unexpected"][:4]}, '
            f'other shape {report["mismatched"][:2]}')


def save_converted(state: Dict[str, torch.Tensor], out: str, meta: Optional[dict]) -> None:
    """Write ``dict(state_dict=state, meta=meta)`` (``meta=None``: the bare ``state``, as
    torchvision / timm files are) to ``out`` atomically (never a partial file)."""
    buf = io.BytesIO()
    torch.save(state if meta is None else dict(state_dict=state, meta=meta), buf)
    atomic_write(out, buf.getvalue())


def split_scheme(uri: str, scheme: str, options: Tuple[str, ...] = ()) -> Tuple[str, str]:
    """``'dino://teacher/a/b.pth'`` -> ``('teacher', 'a/b.pth')``: an optional first path
    segment from ``options``, then the path or URL."""
    rest = uri[len(scheme):] if uri.startswith(scheme) else uri
    head, _, tail = rest.partition('/')
    if head in options and tail:
        return head, tail
    return '', rest
