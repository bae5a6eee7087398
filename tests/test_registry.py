"""`import mmssl_ext` / custom_imports registers into mmpretrain's registries."""
import os
import subprocess
import sys
import textwrap

import pytest

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


# What mmpretrain 1.2.0's projects/dino registers, file by file, with the same registration calls
# (registry, decorator, class name, base class); bodies left out.  Its tools/train.py runs from
# projects/dino and imports these packages with `from models.algorithm import *` etc.
_PROJECTS_DINO = {
    'dataset/__init__.py': 'from .transform import *  # noqa: F401,F403\n',
    'dataset/transform/__init__.py': 'from .processing import DINOMultiCrop\n',
    'dataset/transform/processing.py': """
        from mmcv.transforms import BaseTransform
        from mmpretrain.registry import TRANSFORMS

        @TRANSFORMS.register_module()
        class DINOMultiCrop(BaseTransform):
            pass
    """,
    'engine/__init__.py': 'from .hooks import *  # noqa\n',
    'engine/hooks/__init__.py':
        'from .dino_teacher_temp_warmup_hook import DINOTeacherTempWarmupHook\n',
    'engine/hooks/dino_teacher_temp_warmup_hook.py': """
        from mmengine.hooks import Hook
        from mmpretrain.registry import HOOKS

        @HOOKS.register_module()
        class DINOTeacherTempWarmupHook(Hook):
            pass
    """,
    'models/__init__.py': 'from .algorithm import *  # noqa\nfrom .head import *  # noqa\n'
                          'from .neck import *  # noqa\n',
    'models/algorithm/__init__.py': 'from .dino import DINO\n',
    'models/algorithm/dino.py': """
        from mmpretrain.models import BaseSelfSupervisor
        from mmpretrain.registry import MODELS

        @MODELS.register_module()
        class DINO(BaseSelfSupervisor):
            pass
    """,
    'models/head/__init__.py': 'from .dino_head import DINOHead\n',
    'models/head/dino_head.py': """
        from mmengine.model import BaseModule
        from mmpretrain.registry import MODELS

        @MODELS.register_module()
        class DINOHead(BaseModule):
            pass
    """,
    'models/neck/__init__.py': 'from .dino_neck import DINONeck\n',
    'models/neck/dino_neck.py': """
        from mmengine.model import BaseModule
        from mmpretrain.registry import MODELS

        @MODELS.register_module()
        class DINONeck(BaseModule):
            pass
    """,
}


@pytest.mark.parametrize('mmssl_first', [True, False])
def test_mmpretrain_projects_dino_and_mmssl_ext_register_in_one_process(tmp_path, mmssl_first):
    """mmpretrain's projects/dino (imported as its tools/train.py does) and mmssl_ext register
    into the same registries in one process, in either order, without a KeyError; each name
    resolves to its own package's class."""
    project = tmp_path / 'projects' / 'dino'
    for rel, text in _PROJECTS_DINO.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    project_imports = textwrap.dedent("""
        from dataset import *  # noqa: F401,F403
        from engine import *  # noqa: F401,F403
        from models.algorithm import *  # noqa: F401,F403
        from models.head import *  # noqa: F401,F403
        from models.neck import *  # noqa: F401,F403
    """)
    ours = 'import mmssl_ext\n'
    first, second = (ours, project_imports) if mmssl_first else (project_imports, ours)
    script = first + second + textwrap.dedent("""
        import models.algorithm.dino, models.head.dino_head, models.neck.dino_neck
        from mmengine.registry import DefaultScope
        from mmpretrain.registry import HOOKS, MODELS, TRANSFORMS
        from mmssl_ext.models.algorithms.dino import MMSSLDINO
        from mmssl_ext.models.heads.dino_head import MMSSLDINOHead
        from mmssl_ext.models.losses.dino_loss import MMSSLDINOLoss
        assert MODELS.get('DINO') is models.algorithm.dino.DINO
        assert MODELS.get('DINOHead') is models.head.dino_head.DINOHead
        assert MODELS.get('DINONeck') is models.neck.dino_neck.DINONeck
        assert TRANSFORMS.get('DINOMultiCrop').__module__ == 'dataset.transform.processing'
        assert HOOKS.get('DINOTeacherTempWarmupHook').__module__.startswith('engine.hooks')
        assert MODELS.get('MMSSLDINO') is MMSSLDINO
        assert MODELS.get('MMSSLDINOHead') is MMSSLDINOHead
        assert MODELS.get('MMSSLDINOLoss') is MMSSLDINOLoss
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            head = MODELS.build(dict(type='MMSSLDINOHead', in_channels=8, out_channels=16,
                                     hidden_channels=8, bottleneck_channels=4))
        assert type(head) is MMSSLDINOHead
        print('ok')
    """)
    out = subprocess.run([sys.executable, '-c', script], cwd=str(project),
                         env={**os.environ, 'PYTHONPATH': os.pathsep.join(
                             [str(project), str(REPO), os.environ.get('PYTHONPATH', '')])},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == 'ok'


def test_old_dino_class_names_are_aliases():
    from mmssl_ext.models.algorithms import DINO, MMSSLDINO
    from mmssl_ext.models.heads import DINOHead, MMSSLDINOHead
    from mmssl_ext.models.losses import DINOLoss, MMSSLDINOLoss
    assert DINO is MMSSLDINO and DINOHead is MMSSLDINOHead and DINOLoss is MMSSLDINOLoss
