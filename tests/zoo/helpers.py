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


class DinoBlock(nn.Module):
    """facebookresearch/dino vision_transformer.py Block (pre-norm attention + MLP)."""

    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, dim * 3)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (C // self.heads) ** -0.5).softmax(dim=-1)
        x = x + self.attn.proj((attn @ v).transpose(1, 2).reshape(B, N, C))
        return x + self.mlp.fc2(nn.functional.gelu(self.mlp.fc1(self.norm2(x))))


class DinoViT(nn.Module):
    """DINO's VisionTransformer (timm keys), small: its forward returns norm(x)[:, 0]."""

    def __init__(self, img_size=32, patch=16, dim=128, depth=2, hidden=256):
        super().__init__()
        torch.manual_seed(0)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, (img_size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(DinoBlock(dim, dim // 64, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        for p in self.norm.parameters():
            nn.init.normal_(p, 0.5, 0.1)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


def mm_vit(cfg: dict) -> nn.Module:
    from mmpretrain.models import VisionTransformer
    model = VisionTransformer(**{k: v for k, v in cfg.items() if k != 'type'})
    model.eval()
    return model


def dino_training_checkpoint(teacher: dict, student: dict, teacher_ddp: bool) -> dict:
    """main_dino.py's save_dict: MultiCropWrapper (backbone + DINOHead) per network; the student
    is DDP-wrapped (module.), the teacher only when it has BatchNorm (ResNet)."""
    import argparse

    def wrap(backbone, ddp):
        pre = 'module.' if ddp else ''
        out = {f'{pre}backbone.{k}': v.clone() for k, v in backbone.items()}
        out[f'{pre}head.mlp.0.weight'] = torch.randn(8, 4)
        out[f'{pre}head.last_layer.weight_g'] = torch.ones(16, 1)
        return out

    return {'student': wrap(student, True), 'teacher': wrap(teacher, teacher_ddp),
            'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1, 'params': [0, 1]}]},
            'epoch': 100, 'args': argparse.Namespace(arch='vit_small', patch_size=16),
            'dino_loss': {'center': torch.zeros(1, 16)}}
