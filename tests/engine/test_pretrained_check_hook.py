"""PretrainedCheckHook: a benchmark stops before training when pretrained weights did not load."""
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmssl_ext.engine.hooks.pretrained_check import (PretrainedCheckHook, PretrainedKeysError,
                                                     check_keys, pretrained_cfgs)


class Net(BaseModule):
    def __init__(self, width=4, init_cfg=None):
        super().__init__(init_cfg)
        self.conv = nn.Conv2d(3, width, 3)
        self.bn = nn.BatchNorm2d(width)


class Model(nn.Module):
    def __init__(self, backbone_init=None, width=4):
        super().__init__()
        self.backbone = Net(width, backbone_init)
        self.head = nn.Linear(width, 2)


def _save(tmp_path, state, name='ckpt.pth'):
    path = str(tmp_path / name)
    torch.save(dict(state_dict=state, meta=dict(iter=1)), path)
    return path


def _full_ckpt(tmp_path, width=4, extra=None):
    src = Model(width=width)
    state = {f'backbone.{k}': v for k, v in src.backbone.state_dict().items()}
    state['head.weight'] = src.head.weight.detach()
    state.update(extra or {})
    return _save(tmp_path, state), src


def _runner(model, resume=False, load_from=None):
    return SimpleNamespace(model=model, _resume=resume, _load_from=load_from)


def _init(model):
    model.backbone.init_weights()
    return model


def test_check_keys_reports_each_kind():
    own = dict(a=torch.zeros(2), b=torch.zeros(3), c=torch.zeros(1))
    loaded = dict(a=torch.zeros(2), b=torch.zeros(4), d=torch.ones(1))
    r = check_keys(own, loaded)
    assert r['missing'] == ['c'] and r['unexpected'] == ['d']
    assert r['mismatched'] == ['b: (4,) in the file, (3,) in the model']
    r = check_keys(own, loaded, allow_missing=[r'c$'], allow_unexpected=[r'd'])
    assert r['missing'] == [] and r['unexpected'] == []
    r = check_keys(dict(a=torch.zeros(2)), dict(a=torch.ones(2)), check_values=True)
    assert r['differ'] == ['a']


def test_hook_passes_when_the_weights_loaded(tmp_path):
    ckpt, src = _full_ckpt(tmp_path)
    model = _init(Model(dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.')))
    torch.testing.assert_close(model.backbone.conv.weight, src.backbone.conv.weight)
    hook = PretrainedCheckHook(require=True)
    hook.before_run(_runner(model))
    hook.before_train(_runner(model))
    assert [n for n, _, _ in pretrained_cfgs(model)] == ['backbone']


def test_hook_refuses_a_checkpoint_of_another_width(tmp_path):
    ckpt, _ = _full_ckpt(tmp_path, width=8)
    model = Model(dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.'), width=4)
    _init(model)  # mmengine only warns about the shape mismatch
    with pytest.raises(PretrainedKeysError, match=r'have another shape.*conv\.weight'):
        PretrainedCheckHook().before_train(_runner(model))


def test_hook_refuses_missing_and_unexpected_keys(tmp_path):
    src = Model()
    state = {f'backbone.{k}': v for k, v in src.backbone.state_dict().items()
             if not k.startswith('bn.')}
    state['backbone.extra.weight'] = torch.zeros(1)
    ckpt = _save(tmp_path, state)
    model = _init(Model(dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.')))
    with pytest.raises(PretrainedKeysError) as e:
        PretrainedCheckHook().before_train(_runner(model))
    msg = str(e.value)
    assert ckpt in msg and "prefix 'backbone.'" in msg and 'backbone (Net)' in msg
    assert re.search(r'weights of the model are not in the file \(bn\.weight', msg)
    assert 'extra.weight' in msg
    # declared gaps pass
    PretrainedCheckHook(allow_missing={'backbone': [r'bn\.']},
                        allow_unexpected={'backbone': [r'extra\.']}).before_train(_runner(model))


def test_hook_detects_weights_overwritten_after_loading(tmp_path):
    ckpt, _ = _full_ckpt(tmp_path)
    model = _init(Model(dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.')))
    with torch.no_grad():
        model.backbone.bn.weight.zero_()  # what e.g. zero_init_residual would do
    with pytest.raises(PretrainedKeysError, match='overwritten after loading.*bn.weight'):
        PretrainedCheckHook().before_train(_runner(model))
    # resuming: the weights come from the resumed checkpoint, only keys/shapes are checked
    PretrainedCheckHook().before_train(_runner(model, resume=True))


def test_hook_names_the_config_key_of_a_missing_checkpoint(tmp_path):
    model = Model(dict(type='Pretrained', checkpoint='', prefix='backbone.'))
    with pytest.raises(FileNotFoundError, match=r'model\.backbone\.init_cfg\.checkpoint=PATH'):
        PretrainedCheckHook().before_run(_runner(model))
    model = Model(dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth')))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        PretrainedCheckHook().before_run(_runner(model))


def test_require_refuses_a_model_without_pretrained_init():
    PretrainedCheckHook().before_run(_runner(Model()))  # allowed without require
    with pytest.raises(PretrainedKeysError, match='randomly initialised'):
        PretrainedCheckHook(require=True).before_run(_runner(Model()))


def test_backbone_only_file_with_prefix_none(tmp_path):
    src = Model()
    path = str(tmp_path / 'bb.pth')
    torch.save(src.backbone.state_dict(), path)
    model = _init(Model(dict(type='Pretrained', checkpoint=path, prefix=None)))
    PretrainedCheckHook(require=True).before_train(_runner(model))
    torch.testing.assert_close(model.backbone.bn.running_var, src.backbone.bn.running_var)
