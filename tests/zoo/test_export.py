"""Our backbones -> torchvision ResNet / timm ViT state dicts: the exported network computes
the same features, and ours -> torchvision / timm -> ours is the identity."""
import pytest
import torch
import torchvision

from mmssl_ext.cli.convert import export_main
from mmssl_ext.zoo.common import ZooFormatError
from mmssl_ext.zoo.dino import convert_dino
from mmssl_ext.zoo.export import export_backbone
from tests.zoo.helpers import ATOL, DinoViT, mm_vit, randomize_bn, tv_features

VIT = dict(type='VisionTransformer', img_size=32, patch_size=16, in_channels=3,
           arch=dict(embed_dims=128, num_layers=2, num_heads=2, feedforward_channels=256),
           out_type='cls_token', final_norm=True)


def _ours_resnet18():
    torch.manual_seed(0)
    from mmpretrain.models import ResNet
    model = ResNet(18, out_indices=(3,))
    model.init_weights()
    randomize_bn(model)
    return model


def test_resnet_to_torchvision_and_back(tmp_path, capsys):
    ours = _ours_resnet18()
    full = {'backbone.' + k: v for k, v in ours.state_dict().items()}
    full['head.fc.weight'] = torch.zeros(10, 512)
    src, dst = str(tmp_path / 'iter_3000.pth'), str(tmp_path / 'resnet18_tv.pth')
    torch.save({'state_dict': full, 'meta': {'iter': 3000}}, src)
    info = export_main([src, dst])
    assert info['meta']['torchvision_model'] == 'resnet18'
    exported = torch.load(dst, weights_only=True)
    tv = torchvision.models.resnet18()
    missing, unexpected = tv.load_state_dict(exported, strict=False)
    assert sorted(missing) == ['fc.bias', 'fc.weight'] and not unexpected
    tv.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tv_features(tv, x), ours(x)[0], atol=ATOL, rtol=0)
    back, _ = convert_dino(exported)  # torchvision-keyed -> ours
    assert list(back) == list(full)[:-1]
    assert all(torch.equal(back[k], full[k]) for k in back)


def test_vit_to_timm_and_back():
    torch.manual_seed(0)
    ours = mm_vit(VIT)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.1)
    ckpt = {'state_dict': {'backbone.' + k: v for k, v in ours.state_dict().items()}}
    exported, meta = export_backbone(ckpt)
    assert meta['format'] == 'timm ViT'
    timm_like = DinoViT().eval()
    timm_like.load_state_dict(exported, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(timm_like(x), ours(x)[0], atol=ATOL, rtol=0)
    back, meta = convert_dino(exported)
    assert meta['backbone_cfg'] == VIT
    assert list(back) == list(ckpt['state_dict'])
    assert all(torch.equal(back[k], ckpt['state_dict'][k]) for k in back)


def test_teacher_student_and_refusals():
    ours = _ours_resnet18().state_dict()
    other = {k: v + 1 if v.is_floating_point() else v for k, v in ours.items()}
    ckpt = {'state_dict': {**{'backbone.' + k: v for k, v in ours.items()},
                           **{'teacher.module.0.' + k: v for k, v in other.items()}}}
    state, meta = export_backbone(ckpt)  # our DINO: the teacher, as DINO evaluates
    assert meta['weights'] == 'teacher'
    assert torch.equal(state['conv1.weight'], other['conv1.weight'])
    state, _ = export_backbone(ckpt, 'student')
    assert torch.equal(state['conv1.weight'], ours['conv1.weight'])
    v1c = {'backbone.stem.0.conv.weight': torch.zeros(32, 3, 3, 3)}
    with pytest.raises(ZooFormatError, match='no torchvision / timm twin'):
        export_backbone({'state_dict': v1c})
