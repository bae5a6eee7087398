"""Source-layout checkpoints made from real networks, and their reference features."""
import contextlib
from unittest import mock

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import Bottleneck

#: converted and source features are computed by the same operations in the same order
ATOL = 1e-5


def tv_features(net: torchvision.models.ResNet, x: torch.Tensor) -> torch.Tensor:
    """torchvision ResNet's layer4 output (what mmpretrain ResNet(out_indices=(3,)) returns)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def randomize_bn(net: nn.Module) -> nn.Module:
    """Random BN statistics and affine parameters, so that a lost BN buffer changes features."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


def tv_resnet(depth: int = 18, seed: int = 0) -> torchvision.models.ResNet:
    torch.manual_seed(seed)
    return randomize_bn(getattr(torchvision.models, f'resnet{depth}')())


def vissl_wide_resnet50(w: int) -> torchvision.models.ResNet:
    """VISSL's ResNeXt trunk construction (vissl/models/trunks/resnext.py) with
    WIDTH_MULTIPLIER w: torchvision's ResNet-50 with a 64w stem and 64w..512w bottlenecks."""
    torch.manual_seed(0)
    net = torchvision.models.ResNet(Bottleneck, [3, 4, 6, 3])
    net.inplanes = 64 * w
    net.conv1 = nn.Conv2d(3, 64 * w, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(64 * w)
    net.layer1 = net._make_layer(Bottleneck, 64 * w, 3)
    net.layer2 = net._make_layer(Bottleneck, 128 * w, 4, stride=2)
    net.layer3 = net._make_layer(Bottleneck, 256 * w, 6, stride=2)
    net.layer4 = net._make_layer(Bottleneck, 512 * w, 3, stride=2)
    net.fc = nn.Linear(2048 * w, 10)
    return randomize_bn(net)


def vissl_trunk(net: nn.Module, prefix: str = '_feature_blocks.') -> dict:
    """A torchvision ResNet's weights as VISSL's trunk (``_feature_blocks`` ModuleDict: no fc)."""
    return {prefix + k: v.clone() for k, v in net.state_dict().items()
            if not k.startswith('fc.')}


def vissl_checkpoint(net: nn.Module, heads: bool = True) -> dict:
    """VISSL's checkpoint nesting (vissl/utils/checkpoint.py): trunk and heads under
    classy_state_dict.base_model.model, next to the phase / iteration counters."""
    head = {'0.clf.0.weight': torch.randn(10, 512), '0.clf.0.bias': torch.zeros(10)} \
        if heads else {}
    return {'phase_idx': 3, 'iteration_num': 100, 'type': 'checkpoint',
            'classy_state_dict': {
                'train': True, 'train_phase_idx': 1,
                'base_model': {'model': {'trunk': vissl_trunk(net), 'heads': head},
                               'meta': {'trunk': {}, 'heads': {}}}}}


@contextlib.contextmanager
def no_conv_init():
    """Skip the random init of convolutions (most of a ResNet's build time) for a model whose
    weights are all loaded next with strict=True."""
    with mock.patch.object(nn.Conv2d, 'reset_parameters', lambda self: None):
        yield


def mm_resnet(cfg: dict) -> nn.Module:
    from mmpretrain.models import ResNet
    kwargs = {k: v for k, v in cfg.items() if k != 'type'}
    with no_conv_init():  # load_strict overwrites every weight
        model = ResNet(out_indices=(3,), **kwargs)
    model.eval()  # mmpretrain's ResNet.train returns None
    return model


def load_strict(model: nn.Module, state: dict, prefix: str = 'backbone.') -> nn.Module:
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    model.load_state_dict(own, strict=True)
    model.eval()
    return model
