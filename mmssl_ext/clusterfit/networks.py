"""The pretrained network N_pre as a feature model: a torchvision classifier with local weights,
or the model of an mmssl_ext / mmpretrain config with a full or backbone-only checkpoint; and an
``ImageClassifier`` with all its weights, for logits."""
import os.path as osp
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from mmssl_ext.utils.checkpoint import (PretrainedKeysError, check_keys, load_backbone_weights,
                                        load_checkpoint_safe, state_dict_of)
from mmssl_ext.utils.config import build_model, load_config
from .options import NPreSpec

#: ImageNet RGB statistics, the normalisation of every torchvision classification model
TORCHVISION_MEAN = [123.675, 116.28, 103.53]
TORCHVISION_STD = [58.395, 57.12, 57.375]


def best_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier as a backbone that returns a tuple of feature maps.

    ResNet-like models (``layer1`` .. ``layer4``) return the four stage outputs, so ``layer``
    picks one; every other model returns the input of its classifier (``fc``, ``classifier``
    or ``heads``, replaced by ``Identity``).
    """

    HEADS = ('fc', 'classifier', 'heads', 'head')

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        self.net = net
        self.name = name
        self.staged = all(hasattr(net, f'layer{i}') for i in range(1, 5)) and hasattr(net, 'conv1')
        if not self.staged:
            for head in self.HEADS:
                if hasattr(net, head):
                    setattr(net, head, nn.Identity())
                    break
            else:
                raise ValueError(f'torchvision model {name!r} has none of the classifier '
                                 f'attributes {self.HEADS}; cannot tell where its features are')

    @property
    def num_stages(self) -> int:
        return 4 if self.staged else 1

    def forward(self, x):
        if not self.staged:
            return (self.net(x), )
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        outs = []
        for i in range(1, 5):
            x = getattr(n, f'layer{i}')(x)
            outs.append(x)
        return tuple(outs)


class TorchvisionFeatureModel(nn.Module):
    """``data_preprocessor`` (ImageNet normalisation, BGR->RGB) + :class:`TorchvisionBackbone`,
    the interface :func:`~mmssl_ext.evaluation.features.extract_features` needs."""

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        from mmpretrain.models import ClsDataPreprocessor
        self.data_preprocessor = ClsDataPreprocessor(mean=TORCHVISION_MEAN, std=TORCHVISION_STD,
                                                     to_rgb=True)
        self.backbone = TorchvisionBackbone(net, name)


def _state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a local weights file: a plain state dict, mmengine's ``{'state_dict':
    ...}`` or torchvision's training scripts' ``{'model': ...}``, DDP prefix removed."""
    ckpt = load_checkpoint_safe(path)
    if isinstance(ckpt, dict) and not isinstance(ckpt.get('state_dict'), dict) and \
            isinstance(ckpt.get('model'), dict):
        ckpt = ckpt['model']
    try:
        state = state_dict_of(ckpt, source=path)
    except PretrainedKeysError:
        state = ckpt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ValueError(f'{path}: expected a state dict of tensors (torch.save('
                         f'model.state_dict())), got {type(state).__name__}')
    return state


def load_torchvision_weights(net: nn.Module, weights: str, name: str) -> Dict[str, list]:
    """Load a local state dict (plain, ``{'state_dict': ...}`` or DDP-prefixed) into ``net``.

    Classifier weights (``fc.*`` ...) are optional and ignored; every other weight must be there
    with the right shape.
    """
    state = _state_dict(weights)
    heads = tuple(h + '.' for h in TorchvisionBackbone.HEADS)
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(heads)}
    body = {k: v for k, v in state.items() if not k.startswith(heads)}
    report = check_keys(own, body, model_name=name)
    missing, unexpected, mismatched = (report['missing'], report['unexpected'],
                                       report['mismatched'])
    if missing or unexpected or mismatched:
        raise ValueError(
            f'{weights} does not fit torchvision {name}: {len(missing)} weights missing (e.g. '
            f'{missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), '
            f'{len(mismatched)} of another shape (e.g. {mismatched[:2]})')
    net.load_state_dict(body, strict=False)
    return dict(loaded=len(body), ignored_head=sorted(set(state) - set(body)))


def build_torchvision_model(name: str, weights: Optional[str]) -> Tuple[nn.Module, dict]:
    """torchvision ``name`` with local ``weights`` (``'random'``: keep the random init)."""
    import torchvision
    NPreSpec(torchvision=name, weights=weights).validate()
    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError:
        known = sorted(torchvision.models.list_models(torchvision.models))
        raise ValueError(f'unknown torchvision model {name!r}; classification models are '
                         f'{known}') from None
    info = dict(kind='torchvision', name=name,
                weights='random' if weights == 'random' else osp.abspath(weights))
    if weights != 'random':
        info.update(load_torchvision_weights(net, weights, name))
        info.pop('loaded')
    return TorchvisionFeatureModel(net, name), info


def build_config_model(npre: NPreSpec, seed: int = 0) -> Tuple[nn.Module, Config, dict]:
    """Model of an mmssl_ext / mmpretrain config with a full or backbone-only checkpoint;
    ``npre.layer`` picks an earlier ResNet stage through ``out_indices``."""
    npre.validate()
    config, layer = npre.config, npre.layer
    cfg = load_config(config)
    if npre.cfg_options:
        cfg.merge_from_dict(npre.cfg_options)
    if layer != -1:
        backbone = cfg.model.get('backbone', None)
        if backbone is None or 'ResNet' not in str(backbone.get('type', '')):
            raise ValueError(f'--layer {layer}: only ResNet backbones (out_indices) support an '
                             f'earlier stage; {config} has backbone '
                             f'{None if backbone is None else backbone.get("type")}')
        stages = backbone.get('num_stages', 4)
        if not 0 <= layer < stages:
            raise ValueError(f'--layer must be -1 (last) or a stage index in [0, {stages - 1}], '
                             f'got {layer}')
        backbone['out_indices'] = (layer, )
    model = build_model(cfg, seed)
    checkpoint = npre.checkpoint
    info = dict(kind='config', config=config,
                checkpoint='random' if checkpoint == 'random' else osp.abspath(checkpoint))
    if checkpoint != 'random':
        load_backbone_weights(model, checkpoint)
    return model, cfg, info


def build_pretrained(npre: NPreSpec, seed: int = 0) -> Tuple[nn.Module, dict, int]:
    """N_pre as a feature model on the best device: ``(model, source info, stage index)``."""
    npre.validate()
    layer = npre.layer
    if npre.torchvision is not None:
        model, source = build_torchvision_model(npre.torchvision, npre.weights)
        stages = model.backbone.num_stages
        if layer != -1 and not 0 <= layer < stages:
            raise ValueError(f'--layer must be -1 (last) or a stage index in [0, {stages - 1}] '
                             f'for torchvision {npre.torchvision}, got {layer}')
        stage = layer
    else:
        model, _, source = build_config_model(npre, seed)
        stage = -1  # out_indices already selects --layer
    source['layer'] = layer
    source['pool'] = npre.pool
    device = best_device()
    model.to(device)
    model.data_preprocessor.to(device)
    return model, source, stage


def build_classifier(config: str, checkpoint: str, cfg_options: Optional[dict] = None,
                     seed: int = 0) -> Tuple[nn.Module, dict]:
    """An mmpretrain ``ImageClassifier`` (backbone, neck, head) with ALL its weights loaded from
    a full training checkpoint (safe loader)."""
    if not checkpoint or checkpoint == 'random':
        raise ValueError(f'logits soft targets need a trained classifier: --config {config} '
                         f'--checkpoint FULL_CHECKPOINT (got {checkpoint!r})')
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    from mmpretrain.models import ImageClassifier
    model = build_model(cfg, seed)
    if not isinstance(model, ImageClassifier) or getattr(model, 'head', None) is None:
        raise ValueError(
            f'{config}: model type {cfg.model.get("type")} has no classification head, so it '
            f'gives no logits; logits soft targets need an mmpretrain ImageClassifier config + '
            f'checkpoint.  For a self-supervised N_pre pass --clusters DIR (soft assignment to '
            f'the centroids of a cluster step)')
    try:
        state = state_dict_of(load_checkpoint_safe(checkpoint), source=checkpoint)
    except PretrainedKeysError as e:
        raise ValueError(str(e)) from None
    own = {k: v for k, v in model.state_dict().items()
           if k.startswith(('backbone.', 'neck.', 'head.'))}
    head_keys = [k for k in own if k.startswith('head.')]
    if head_keys and not any(k in state for k in head_keys):
        raise ValueError(f'{checkpoint} has no head weights (e.g. {head_keys[0]}): a backbone-'
                         f'only checkpoint gives no logits; use the full training checkpoint, '
                         f'or --clusters DIR for soft cluster assignments')
    report = check_keys(own, state)
    missing, mismatched = report['missing'], report['mismatched']
    if missing or mismatched:
        raise ValueError(f'{checkpoint} does not fit {config}: {len(missing)} weights missing '
                         f'(e.g. {missing[:3]}), {len(mismatched)} of another shape (e.g. '
                         f'{mismatched[:2]}); wrong config, num_classes or checkpoint')
    model.load_state_dict({k: state[k] for k in own}, strict=False)
    model.to(best_device())
    info = dict(kind='classifier', config=config, checkpoint=osp.abspath(checkpoint),
                num_classes=int(cfg.model.head.get('num_classes', -1)))
    return model, info
