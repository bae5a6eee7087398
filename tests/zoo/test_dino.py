"""Official DINO -> mmpretrain: torchvision-keyed ResNet-50, timm-style ViT, the teacher or the
student of a main_dino.py training checkpoint; converted features equal the source's."""
import pytest
import torch

from mmssl_ext.zoo.common import ZooFormatError, load_source
from mmssl_ext.zoo.dino import EXTRA_SAFE, convert_dino
from tests.zoo.helpers import (ATOL, DinoViT, dino_training_checkpoint, load_strict, mm_resnet,
                               mm_vit, tv_features, tv_resnet)


def test_resnet_backbone_file():
    """dino_resnet50_pretrain.pth: torchvision's ResNet keys (fc dropped); a ResNet-18 here,
    the ResNet-50 layout is tested in test_vissl.py."""
    net = tv_resnet(18)
    state, meta = convert_dino(net.state_dict())
    assert meta['backbone_cfg'] == dict(type='ResNet', depth=18, in_channels=3)
    model = load_strict(mm_resnet(meta['backbone_cfg']), state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], tv_features(net, x), atol=ATOL, rtol=0)


def _vit_features_equal(src: DinoViT, state, cfg):
    model = load_strict(mm_vit(cfg), state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], src(x), atol=ATOL, rtol=0)


def test_vit_backbone_file():
    src = DinoViT().eval()
    state, meta = convert_dino(src.state_dict())
    cfg = meta['backbone_cfg']
    assert cfg['arch'] == dict(embed_dims=128, num_layers=2, num_heads=2, feedforward_channels=256)
    assert (cfg['img_size'], cfg['patch_size'], cfg['out_type']) == (32, 16, 'cls_token')
    _vit_features_equal(src, state, cfg)


@pytest.mark.parametrize('network', ['', 'teacher', 'student'])
def test_training_checkpoint(tmp_path, network):
    teacher, student = DinoViT().eval(), DinoViT().eval()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01)
    ckpt = dino_training_checkpoint(teacher.state_dict(), student.state_dict(),
                                    teacher_ddp=False)
    path = str(tmp_path / 'dino_full_checkpoint.pth')
    torch.save(ckpt, path)  # holds argparse.Namespace: loaded with DINO's extra safe class
    state, meta = convert_dino(load_source(path, extra_safe=EXTRA_SAFE), network, source=path)
    assert meta['weights'] == (network or 'teacher')
    assert not any('head' in k for k in state)
    _vit_features_equal(student if network == 'student' else teacher, state,
                        meta['backbone_cfg'])


def test_resnet_training_checkpoint_teacher_ddp():
    """A ResNet teacher has BatchNorm, so main_dino.py wraps it in DDP too (module.backbone.)."""
    t, s = tv_resnet(18, seed=1), tv_resnet(18, seed=2)
    ckpt = dino_training_checkpoint(t.state_dict(), s.state_dict(), teacher_ddp=True)
    state, _ = convert_dino(ckpt)
    assert torch.equal(state['backbone.conv1.weight'], t.conv1.weight)
    state, _ = convert_dino(ckpt, 'student')
    assert torch.equal(state['backbone.conv1.weight'], s.conv1.weight)


def test_network_of_a_backbone_file_refused():
    with pytest.raises(ZooFormatError, match='holds one network'):
        convert_dino(DinoViT().state_dict(), 'student')
    with pytest.raises(ZooFormatError, match='Accepted layouts'):
        convert_dino({'encoder.weight': torch.zeros(1)})
