"""vissl://, dino:// and mmselfsup:// in init_cfg: the original file loads as the converted
backbone, PretrainedCheckHook passes (zero missing keys, values as the file's), and an mmdet
Faster R-CNN whose backbone points at a VISSL-layout file trains 2 iterations from it."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix

import mmssl_ext  # noqa: F401
import mmssl_ext.zoo  # noqa: F401  registers the schemes
from mmssl_ext.engine.hooks.pretrained_check import PretrainedCheckHook
from tests.helpers import REPO
from tests.zoo.helpers import (DinoViT, dino_training_checkpoint, tv_resnet, vissl_checkpoint)

FMNIST_DET = osp.join(REPO, 'configs', 'transfer', 'mmdet',
                      'faster-rcnn_r18-w32_fpn_1xb8-1000it_fmnist-det.py')


def _classifier(backbone: dict, checkpoint: str):
    from mmpretrain.registry import MODELS
    backbone = dict(backbone, init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                                            prefix='backbone.'))
    return MODELS.build(dict(type='ImageClassifier', backbone=backbone,
                             neck=dict(type='GlobalAveragePooling'),
                             head=dict(type='LinearClsHead', num_classes=3, in_channels=8)))


def _init_and_check(model):
    """Initialise as the Runner does, then run PretrainedCheckHook's two checks."""
    model.init_weights()
    runner = SimpleNamespace(model=model, _resume=False, _load_from=None)
    hook = PretrainedCheckHook(require=True)
    hook.before_run(runner)
    hook.before_train(runner)  # raises on a missing / unexpected / other-shape / other value


def test_vissl_scheme(tmp_path):
    net = tv_resnet(18)
    path = str(tmp_path / 'model_final_checkpoint_phase199.torch')
    torch.save(vissl_checkpoint(net), path)
    state = _load_checkpoint_with_prefix('backbone.', f'vissl://{path}')
    assert set(state) == {k for k in net.state_dict() if not k.startswith('fc.')}
    model = _classifier(dict(type='ResNet', depth=18), f'vissl://{path}')
    _init_and_check(model)
    assert torch.equal(model.backbone.layer3[1].conv2.weight, net.layer3[1].conv2.weight)


@pytest.mark.parametrize('network', ['', 'teacher/', 'student/'])
def test_dino_scheme(tmp_path, network):
    teacher, student = DinoViT(), DinoViT()
    with torch.no_grad():
        student.cls_token.add_(1)
    path = str(tmp_path / 'dino_vitbase16_full_checkpoint.pth')
    torch.save(dino_training_checkpoint(teacher.state_dict(), student.state_dict(), False), path)
    arch = dict(embed_dims=128, num_layers=2, num_heads=2, feedforward_channels=256)
    model = _classifier(dict(type='VisionTransformer', arch=arch, img_size=32, patch_size=16),
                        f'dino://{network}{path}')
    _init_and_check(model)
    src = student if network == 'student/' else teacher
    assert torch.equal(model.backbone.cls_token, src.cls_token)


def test_mmselfsup_scheme(tmp_path):
    net = tv_resnet(18)
    state = {'backbone.' + k: v for k, v in net.state_dict().items() if not k.startswith('fc')}
    state['neck.fc.weight'] = torch.zeros(4, 512)
    path = str(tmp_path / 'rotation_resnet50.pth')
    torch.save({'state_dict': state, 'meta': {'epoch': 70}}, path)
    model = _classifier(dict(type='ResNet', depth=18), f'mmselfsup://{path}')
    _init_and_check(model)
    assert torch.equal(model.backbone.bn1.running_var, net.bn1.running_var)


class _RecordInit(Hook):
    """The backbone's weights right after initialisation (before the first iteration)."""
    priority = 'LOWEST'

    def before_train(self, runner):
        self.conv1 = runner.model.backbone.conv1.weight.detach().clone()
        self.bn = runner.model.backbone.layer4[1].bn2.running_mean.detach().clone()


def test_mmdet_faster_rcnn_from_vissl_file(tiny_det_root, tmp_path):
    from mmssl_ext.cli import train as train_api
    from mmssl_ext.engine.runner import build_runner
    from mmssl_ext.utils.config import load_config
    from tests.test_transfer_configs import _det_data
    net = tv_resnet(18)
    path = str(tmp_path / 'vissl_r18.torch')
    torch.save(vissl_checkpoint(net), path)
    cfg = train_api.merge_args(load_config(FMNIST_DET), train_api.parse_args([FMNIST_DET]))
    cfg.work_dir = str(tmp_path / 'work')
    # torchvision's ResNet-18 widths (the config's own network is a width-32 ResNet-18)
    cfg.model.backbone.update(stem_channels=64, base_channels=64)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.backbone.init_cfg.checkpoint = f'vissl://{path}'
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=32)
    cfg.model.train_cfg.rcnn.sampler.num = 16
    _det_data(cfg, tiny_det_root, masks=False)
    cfg.train_dataloader.dataset.pipeline[2]['scale'] = (64, 64)  # the canvases' own size
    assert any(h['type'] == 'PretrainedCheckHook' for h in cfg.custom_hooks)
    runner = build_runner(cfg)
    record = _RecordInit()
    runner.register_hook(record)
    runner.train()
    assert torch.equal(record.conv1, net.conv1.weight)
    assert torch.equal(record.bn, net.layer4[1].bn2.running_mean)
    # and it trained: the weights moved away from the file's
    assert not torch.equal(runner.model.backbone.conv1.weight, net.conv1.weight)


def test_url_is_downloaded_once_into_the_hub_cache(tmp_path, monkeypatch):
    """dino://https://... : fetched into torch hub's checkpoint cache, then loaded safely."""
    import shutil
    net = tv_resnet(18)
    served = str(tmp_path / 'served.pth')
    torch.save(net.state_dict(), served)
    calls = []

    def fake_download(url, dst, progress=True):  # no network here: "serve" the local file
        calls.append(url)
        shutil.copy(served, dst)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', fake_download)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    url = 'https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth'
    for _ in range(2):
        state = _load_checkpoint_with_prefix('backbone.', f'dino://{url}')
    assert calls == [url]
    assert osp.isfile(str(tmp_path / 'hub' / 'checkpoints' / 'dino_resnet50_pretrain.pth'))
    assert torch.equal(state['layer1.0.conv1.weight'], net.layer1[0].conv1.weight)
