"""The OpenMMLab model index (model-index.yml, configs/*/metafile.yml) and its ModelHub
registration: the schema mmpretrain / mim read, and list_models / get_model / FeatureExtractor /
inference_model on our names with local checkpoints (no network)."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from modelindex.load_model_index import load

import mmssl_ext  # noqa: F401  (registers the index with ModelHub)
from mmssl_ext.zoo.model_index import model_index_location

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCHEMES = ('vissl://', 'dino://', 'mmselfsup://')
FMNIST_NAME = 'pirl_resnet18-w32_1xb64-3000it_fmnist'
LINEAR_NAME = 'resnet50_pirl-32xb32-200e-vissl-pre_8xb32-linear-steplr-100e_in1k'


@pytest.fixture(scope='module')
def index():
    model_index = load(osp.join(REPO, 'model-index.yml'))
    model_index.build_models_with_collections()
    return model_index


def test_every_method_folder_is_imported():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        text = f.read()
    for metafile in glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')):
        assert osp.relpath(metafile, REPO) in text, metafile


def test_schema(index):
    names = [m.name for m in index.models]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f'duplicate model names: {sorted(dup)}'
    assert all(n == n.lower() for n in names), 'ModelHub looks names up in lower case'
    collections = {c.name for c in index.collections}
    for m in index.models:
        assert m.in_collection in collections, (m.name, m.in_collection)
        assert m.config and osp.isfile(osp.join(REPO, m.config)), (m.name, m.config)
        assert m.metadata.training_data, m.name
        if m.weights is not None:
            assert m.weights.startswith(SCHEMES), (m.name, m.weights)
        for down in m.data.get('Downstream', None) or []:
            assert down in names, (m.name, down)
        for result in m.results or []:
            assert result.task and result.dataset and result.metrics, m.name
            assert all(isinstance(v, float) for v in result.metrics.values()), m.name
    for c in index.collections:
        assert osp.isfile(osp.join(REPO, c.readme)), c.name


def test_registered_next_to_mmpretrain(index):
    from mmpretrain import list_models
    from mmpretrain.apis import ModelHub
    ours = {m.name for m in index.models}
    listed = set(list_models())
    assert ours <= listed
    assert 'resnet50_8xb32_in1k' in listed  # mmpretrain's own still there
    # no name shadows one of mmpretrain's: each of ours resolves to our metafile
    _, root = model_index_location()
    for name in ours:
        assert ModelHub._models_dict[name].filepath.startswith(osp.join(root, 'configs')), name
    assert {'pirl_resnet50_32xb32-200e_in1k-vissl', 'pirl_resnet50_32xb32-800e_in1k-vissl',
            FMNIST_NAME} <= set(list_models('*pirl*'))


def test_get_model_without_a_test_loop():
    from mmpretrain import get_model
    model = get_model('clusterfit-fit_resnet18-w32_1xb64-3000it_fmnist')  # test_dataloader=None
    assert type(model.backbone).__name__ == 'ResNet'


def test_get_model_local_checkpoint(tmp_path):
    from mmpretrain import get_model
    model = get_model(FMNIST_NAME)
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt = str(tmp_path / 'pirl.pth')
    torch.save({'state_dict': state, 'meta': {}}, ckpt)
    loaded = get_model(FMNIST_NAME, pretrained=ckpt)
    key = 'backbone.conv1.weight'
    assert torch.equal(loaded.state_dict()[key], state[key])
    assert not torch.equal(model.state_dict()[key], state[key])


def test_weight_schemes_are_loader_schemes(index):
    """Every Weights prefix is a scheme of mmengine's CheckpointLoader (registered by the
    converters on ``import mmssl_ext``)."""
    from mmengine.runner import CheckpointLoader
    used = {m.weights.split('://', 1)[0] + '://' for m in index.models if m.weights}
    registered = set(CheckpointLoader._schemes)
    missing = used - registered
    assert not missing, f'Weights use schemes no loader handles: {sorted(missing)}'


def test_published_name_from_a_vissl_file(tmp_path):
    """A published name loads the original file's layout through its Weights scheme: a VISSL
    checkpoint of a real torchvision ResNet-50 gives the same features (atol 1e-4); then
    FeatureExtractor and inference_model run on it (the linear-probe entry of the name)."""
    from mmpretrain import FeatureExtractor, get_model, inference_model

    from tests.zoo.helpers import tv_features, tv_resnet, vissl_checkpoint
    net = tv_resnet(depth=50)
    path = str(tmp_path / 'model_final_checkpoint_phase199.torch')
    torch.save(vissl_checkpoint(net), path)
    model = get_model(LINEAR_NAME, pretrained=f'vissl://{path}')
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model.backbone(x)[-1]
        ref = tv_features(net, x)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)

    # the config's test pipeline (resize 256, crop 224) at 64 px, so the R50 forwards stay fast
    for t in model._config.test_dataloader.dataset.pipeline:
        if t['type'] == 'ResizeEdge':
            t['scale'] = 73
        elif t['type'] == 'CenterCrop':
            t['crop_size'] = 64
    image = np.random.RandomState(0).randint(0, 255, (64, 80, 3), dtype=np.uint8)
    feats = FeatureExtractor(model)(image)[0]
    assert feats[-1].shape == (2048, )
    result = inference_model(model, image)
    assert 0 <= result['pred_label'] < 1000


def test_published_vit_name_from_a_dino_file(tmp_path):
    """The DINO ViT-S/16 name with an official-layout (timm keys) backbone file of the real size:
    its class token equals the source network's (atol 1e-4); the teacher is that backbone too."""
    from mmpretrain import get_model

    from tests.zoo.helpers import DinoViT
    torch.manual_seed(0)
    net = DinoViT(img_size=224, patch=16, dim=384, depth=12, hidden=1536).eval()
    path = str(tmp_path / 'dino_deitsmall16_pretrain.pth')
    torch.save(net.state_dict(), path)
    model = get_model('dino_vit-small-p16_in1k-official', pretrained=f'dino://{path}')
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)[-1], net(x), atol=1e-4, rtol=0)
    # the file has no teacher: it starts as the loaded student, as DINO initialises it
    student, teacher = model.backbone.state_dict(), model.teacher.module[0].state_dict()
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[k], teacher[k]) for k in student)
