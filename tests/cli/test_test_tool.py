"""tools/test.py: evaluates a classifier checkpoint like mmpretrain's test tool."""
import pickle

import pytest
import torch
from mmssl_ext.utils.config import load_config
from mmengine.registry import DefaultScope

from mmssl_ext.cli import test as test_api


def test_test_tool_metrics_and_predictions(tiny_tree, tmp_path):
    from mmpretrain.registry import MODELS
    cfg = load_config('mmpretrain::resnet/resnet18_8xb32_in1k.py')
    cfg.model.head.num_classes = 3
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    torch.manual_seed(0)
    model.init_weights()
    ckpt = tmp_path / 'cls.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    opts = [f'test_dataloader.dataset.data_root={tiny_tree}', 'test_dataloader.batch_size=4',
            'test_dataloader.num_workers=0', 'model.head.num_classes=3',
            'model.data_preprocessor.num_classes=3', 'test_evaluator.topk=[1,2]']
    out = tmp_path / 'pred.pkl'
    metrics = test_api.main(['mmpretrain::resnet/resnet18_8xb32_in1k.py', str(ckpt),
                             '--work-dir', str(tmp_path / 'w'), '--out', str(out),
                             '--cfg-options', *opts])
    assert set(metrics) == {'accuracy/top1', 'accuracy/top2'}
    preds = pickle.load(open(out, 'rb'))
    assert len(preds) == 12  # 3 classes x 4 val images of the tiny tree
    # the reported top-1 is the accuracy of the dumped predictions
    correct = [int(p['pred_label'][0]) == int(p['gt_label'][0]) for p in preds]
    assert metrics['accuracy/top1'] == pytest.approx(100.0 * sum(correct) / len(correct))
