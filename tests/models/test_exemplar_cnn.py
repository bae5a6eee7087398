"""Exemplar-CNN: the loss against an independent reference, the surrogate labels, bad seed-set /
classifier sizes, and the Fashion-MNIST config through tools/train.py's path."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.hooks.exemplar_check import ExemplarClassesCheckHook
from mmssl_ext.registry import MODELS
from tests.helpers import REPO

FMNIST_CFG = f'{REPO}/configs/exemplar_cnn/exemplar-cnn_r18-w32_1xb64-3000it_fmnist.py'
NUM_CLASSES, IDX = 10, (3, 7, 0, 9)


def _tiny_model():
    cfg = Config.fromfile(FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.head.update(num_classes=NUM_CLASSES, dropout=0.0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    return model


def _batch(seed=0, n_views=1):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(len(IDX), 3, 32, 32, generator=g) for _ in range(n_views)]
    return views, [DataSample(metainfo=dict(sample_idx=i)) for i in IDX]


def _reference_ce(logits: np.ndarray, labels) -> float:
    """Mean softmax cross-entropy, written out with a loop (float64)."""
    total = 0.0
    for row, y in zip(logits.astype(np.float64), labels):
        m = row.max()
        total += -(row[y] - m - np.log(np.exp(row - m).sum()))
    return total / len(labels)


@pytest.mark.parametrize('n_views', [1, 2])
def test_loss_is_cross_entropy_over_seed_classes(n_views):
    torch.manual_seed(0)
    model = _tiny_model()
    views, samples = _batch(n_views=n_views)
    with torch.no_grad():  # the same forward (train-mode BN over all views), done by hand
        feat = model.backbone(torch.cat(views))[-1].mean(dim=(2, 3))
        logits = (feat @ model.head.fc.weight.t() + model.head.fc.bias).numpy()
    out = model.loss(views if n_views > 1 else views[0], samples)
    labels = list(IDX) * n_views  # every view of seed i belongs to class i
    expected = _reference_ce(logits, labels)
    assert out['loss'].item() == pytest.approx(expected, rel=1e-5)
    # a wrong label assignment (classes shifted by one seed) gives a different value
    wrong = [(y + 1) % NUM_CLASSES for y in labels]
    assert abs(_reference_ce(logits, wrong) - expected) > 1e-3
    assert 'accuracy_top-1' in out and not out['accuracy_top-1'].requires_grad
    out['loss'].backward()
    assert model.head.fc.weight.grad.abs().sum() > 0
    assert sum(p.grad.abs().sum() for p in model.backbone.parameters()
               if p.grad is not None) > 0


def test_bad_inputs_give_clear_errors():
    model = _tiny_model()
    views, samples = _batch()
    with pytest.raises(ValueError, match=r'dataset index 10 but only 10 surrogate classes'):
        model.loss(views[0], [DataSample(metainfo=dict(sample_idx=i)) for i in (0, 1, 2, 10)])
    with pytest.raises(KeyError, match='sample_idx'):
        model.loss(views[0], [DataSample() for _ in IDX])
    with pytest.raises(ValueError, match='4 images but 3 data samples'):
        model.loss(views[0], samples[:3])
    with pytest.raises(ValueError, match='of one shape'):
        model.loss([views[0], views[0][:, :, :16, :16]], samples)


@pytest.mark.parametrize('seeds', [8, 12])
def test_check_hook_names_both_sizes(seeds):
    model = _tiny_model()
    runner = SimpleNamespace(model=model, train_dataloader=SimpleNamespace(dataset=[0] * seeds))
    with pytest.raises(ValueError, match=rf'num_classes={NUM_CLASSES} surrogate classes but the '
                                         rf'seed set .* has {seeds} images') as err:
        ExemplarClassesCheckHook().before_train(runner)
    assert ('fewer images than classes' in str(err.value)) == (seeds < NUM_CLASSES)
    runner.train_dataloader.dataset = [0] * NUM_CLASSES
    ExemplarClassesCheckHook().before_train(runner)  # equal sizes pass
    ExemplarClassesCheckHook().before_train(  # a model of another method: nothing to check
        SimpleNamespace(model=torch.nn.Linear(2, 2), train_dataloader=runner.train_dataloader))


def test_fmnist_config_trains_and_checks_the_seed_set(tiny_tree, tmp_path):
    """tools/train.py's path on the real config shrunk to 12 seeds of the tiny tree: the seed set
    and the classifier agree (the config's check hook runs before the first step); 2 iterations
    run."""
    assert dict(type='ExemplarClassesCheckHook') in Config.fromfile(FMNIST_CFG).custom_hooks
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=12', 'train_cfg.max_iters=2',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']
    runner = train_api.main([FMNIST_CFG, '--work-dir', str(tmp_path / 'ok'), '--cfg-options',
                             *opts, 'model.head.num_classes=12'])
    assert type(runner.model).__name__ == 'ExemplarCNN'
    assert any(type(h).__name__ == 'ExemplarClassesCheckHook' for h in runner.hooks)
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 2 and np.isfinite(losses).all()
    # about log(12) at the start: 12 classes, a nearly uniform classifier
    assert abs(losses[0] - np.log(12)) < 0.5


def test_collapse_monitor_sees_the_surrogate_class_softmax():
    from mmssl_ext.engine.hooks.collapse_monitor import model_collapse_outputs
    torch.manual_seed(0)
    model = _tiny_model().eval()
    views, _ = _batch(n_views=2)
    with torch.no_grad():
        out = model_collapse_outputs(model, views)
        feat = model.backbone(views[0])[-1].mean(dim=(2, 3))  # the first view only
        logits = feat @ model.head.fc.weight.t() + model.head.fc.bias
    assert out['probs'].shape == (len(IDX), NUM_CLASSES)
    torch.testing.assert_close(out['probs'], torch.softmax(logits, dim=1))
    torch.testing.assert_close(out['embedding'].mean(dim=(2, 3)), feat)
