"""`import mmssl_ext` / custom_imports registers into mmpretrain's registries."""
import subprocess
import sys
import textwrap

from tests.helpers import REPO


def test_import_registers_into_mmpretrain():
    import mmssl_ext
    from mmpretrain.registry import HOOKS, MODEL_WRAPPERS
    from mmssl_ext.engine import KNNEvalHook, MMSSLDistributedDataParallel
    assert mmssl_ext.__version__
    assert HOOKS.get('KNNEvalHook') is KNNEvalHook
    assert MODEL_WRAPPERS.get('MMSSLDistributedDataParallel') is MMSSLDistributedDataParallel


def test_config_with_custom_imports_resolves_in_fresh_process(tmp_path):
    """A user's config (mmpretrain:: base + our _base_ + custom_imports) builds our types in a
    process that never imported mmssl_ext itself."""
    cfg_path = tmp_path / 'user_cfg.py'
    cfg_path.write_text(textwrap.dedent(f"""
        _base_ = ['mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py',
                  '{REPO}/configs/_base_/datasets/fmnist_knn.py']
        custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)
        model = dict(backbone=dict(depth=18), neck=dict(in_channels=512))
        custom_hooks = [dict(type='KNNEvalHook', interval=3,
                             train_dataloader={{{{_base_.knn_eval.train_dataloader}}}},
                             val_dataloader={{{{_base_.knn_eval.val_dataloader}}}})]
    """))
    script = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmengine.registry import DefaultScope, HOOKS, MODELS
        assert 'mmssl_ext' not in sys.modules
        cfg = Config.fromfile({str(cfg_path)!r})
        assert 'mmssl_ext' in sys.modules, 'custom_imports did not import mmssl_ext'
        assert cfg.default_scope == 'mmpretrain'
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            hook = HOOKS.build(cfg.custom_hooks[0])
            model = MODELS.build(cfg.model)
        print(type(hook).__module__, type(hook).__name__, hook.interval,
              type(model).__name__, model.backbone.depth,
              cfg.knn_eval.train_dataloader.dataset.data_root)
    """)
    out = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ['mmssl_ext.engine.hooks.knn_hook', 'KNNEvalHook', '3', 'MoCo',
                                  '18', 'data/fashion_mnist/']


def test_moved_modules_keep_their_old_import_paths():
    """Old import paths of moved classes still work (deprecated aliases for one release), and the
    registry names did not change."""
    import warnings

    from mmpretrain.registry import HOOKS, MODELS
    from mmssl_ext.engine.hooks.odc_hook import ODCHook
    from mmssl_ext.models import data_preprocessors as new
    from mmssl_ext.models.algorithms.cmc import CMCDataPreprocessor
    from mmssl_ext.models.algorithms.colorization import ColorizationDataPreprocessor
    from mmssl_ext.models.algorithms.deepcluster import SobelDataPreprocessor
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        from mmssl_ext.engine.hooks.deepcluster_hook import ODCHook as OldODCHook
        from mmssl_ext.models.data_preprocessor import PatchViewDataPreprocessor
    assert OldODCHook is ODCHook is HOOKS.get('ODCHook')
    for old in (PatchViewDataPreprocessor, ColorizationDataPreprocessor, CMCDataPreprocessor,
                SobelDataPreprocessor):
        assert getattr(new, old.__name__) is old
        assert MODELS.get(old.__name__) is old
        assert old.__module__ == 'mmssl_ext.models.data_preprocessors'
