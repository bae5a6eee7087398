"""Invariance measure: the transforms are what they claim, the distances equal a manual
computation (backbone and PIRL's own f / g branches), and tools/analysis/invariance.py writes
its table, JSON and one histogram per transform."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F

from mmssl_ext.cli import invariance as invariance_api
from mmssl_ext.cli.analysis_common import load_analysis_config, subset_indices
from mmssl_ext.cli.extract_backbone import extract_backbone
from mmssl_ext.cli.knn_eval import build_model
from mmssl_ext.evaluation.invariance import (augment_view, invariance_distances, jigsaw_cells,
                                             jigsaw_image, jigsaw_patch_view, jigsaw_view,
                                             random_permutation, reference_distances,
                                             rotation_view)
from mmssl_ext.evaluation.plots import PNG_SIGNATURE
from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from mmssl_ext.utils.config import build_dataloader
from tests.evaluation.test_layer_probe import PIRL_CFG, knn_options, options_dict
from tests.helpers import MOCO_FMNIST_CFG, tiny_moco_options


def _image(c=3, h=32, w=32):
    """An image whose pixels are all different, so a pixel permutation is visible."""
    return torch.arange(c * h * w, dtype=torch.float32).view(c, h, w)


def test_rotation_view_is_a_nonzero_rotation():
    img = _image()
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(60):
        out = rotation_view(img, gen)
        ks = [k for k in range(4) if torch.equal(out, torch.rot90(img, k, dims=(1, 2)))]
        assert len(ks) == 1 and ks[0] != 0
        seen.add(ks[0])
        assert torch.equal(out.flatten().sort().values, img.flatten().sort().values)
    assert seen == {1, 2, 3}


def _tiles(img, grid=3):
    return jigsaw_cells(img, grid)[0]


def test_jigsaw_view_permutes_the_tiles():
    img = _image()  # 32 px: tiles of 10 px on the central 30 x 30, a 1 px border stays
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = jigsaw_view(img, gen)
        # a permutation of the original pixels, not the original image
        assert torch.equal(out.flatten().sort().values, img.flatten().sort().values)
        assert not torch.equal(out, img)
        # the border is untouched; each output tile is exactly one original tile
        assert torch.equal(out[:, [0, 31]], img[:, [0, 31]])
        assert torch.equal(out[:, :, [0, 31]], img[:, :, [0, 31]])
        orig = _tiles(img)
        # tiles by hand: rows/cols 1 + 10 * i
        assert torch.equal(orig[5], img[:, 11:21, 21:31])
        perm = [next(j for j in range(9) if torch.equal(t, orig[j])) for t in _tiles(out)]
        assert sorted(perm) == list(range(9)) and perm != list(range(9))
    # the patch view draws the same permutation from the same generator state
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(jigsaw_patch_view(img, g1), _tiles(jigsaw_view(img, g2)))
    assert jigsaw_patch_view(img, g1, patch_size=16).shape == (9, 3, 16, 16)
    # explicit permutation: output cell i holds tile perm[i]
    perm = torch.tensor([8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert torch.equal(_tiles(jigsaw_image(img, perm)), _tiles(img)[perm])


def test_random_permutation_is_never_the_identity():
    gen = torch.Generator().manual_seed(0)
    perms = {tuple(random_permutation(2, gen).tolist()) for _ in range(50)}
    assert perms == {(1, 0)}
    with pytest.raises(ValueError):
        random_permutation(1, gen)


def test_augment_view_is_seeded_and_in_range():
    img = torch.rand(3, 32, 32) * 255
    a = augment_view(img, torch.Generator().manual_seed(1))
    b = augment_view(img, torch.Generator().manual_seed(1))
    c = augment_view(img, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == img.shape and a.min() >= 0 and a.max() <= 255
    assert not torch.allclose(a, img)


@pytest.fixture(scope='module')
def val_setup(tiny_tree):
    cfg, _ = load_analysis_config(PIRL_CFG, options_dict(knn_options(tiny_tree)))
    cfg.knn_eval.val_dataloader.batch_size = 5  # batches of 5, 5, 2
    loader = build_dataloader(cfg.knn_eval.val_dataloader, seed=0)
    return cfg, loader


def _preprocess(cfg, x):
    """PIRL config's preprocessor by hand: BGR -> RGB, (x - mean) / std."""
    mean = torch.tensor(cfg.model.data_preprocessor.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.model.data_preprocessor.std).view(1, 3, 1, 1)
    return (x[:, [2, 1, 0]].float() - mean) / std


def _pooled_res5(bb, x):
    x = bb.maxpool(bb.relu(bb.norm1(bb.conv1(x))))
    for layer in (bb.layer1, bb.layer2, bb.layer3, bb.layer4):
        x = layer(x)
    return x.mean(dim=(2, 3))


@torch.no_grad()
def test_identity_gives_zero(val_setup):
    cfg, loader = val_setup
    model = build_model(cfg).eval()
    d = invariance_distances(model, loader, 'identity')
    assert d.shape == (12, )
    assert d.abs().max() < 1e-5


@pytest.mark.parametrize('transform,view', [('rotation', rotation_view),
                                            ('jigsaw', jigsaw_view)])
@torch.no_grad()
def test_backbone_distances_match_manual(val_setup, transform, view):
    cfg, loader = val_setup
    model = build_model(cfg).eval()
    d = invariance_distances(model, loader, transform, seed=3)
    gen = torch.Generator().manual_seed(3)
    ref = []
    for batch in loader:
        imgs = batch['inputs'].float()
        views = torch.stack([view(img, gen) for img in imgs])
        v = F.normalize(_pooled_res5(model.backbone, _preprocess(cfg, imgs)), dim=1)
        vt = F.normalize(_pooled_res5(model.backbone, _preprocess(cfg, views)), dim=1)
        ref.append(torch.sqrt(((v - vt) ** 2).sum(dim=1)))
    ref = torch.cat(ref)
    torch.testing.assert_close(d, ref, rtol=1e-4, atol=1e-5)
    assert (d > 1e-3).all() and (d <= 2).all()
    # another seed, other views
    assert not torch.allclose(d, invariance_distances(model, loader, transform, seed=4))


@torch.no_grad()
def test_reference_distances_pair_different_images(val_setup):
    cfg, loader = val_setup
    model = build_model(cfg).eval()
    d = reference_distances(model, loader, seed=0)
    imgs = torch.cat([b['inputs'] for b in loader]).float()
    v = F.normalize(_pooled_res5(model.backbone, _preprocess(cfg, imgs)), dim=1)
    pairwise = torch.cdist(v, v)
    for i in range(12):
        others = torch.cat([pairwise[i, :i], pairwise[i, i + 1:]])
        assert (others - d[i]).abs().min() < 1e-4  # the distance to one of the other images
    assert (d > 1e-3).all()


@torch.no_grad()
def test_pirl_repr_matches_manual_f_and_g(val_setup, tiny_pirl_ckpt, tmp_path, capsys):
    import matplotlib.image as mpimg
    cfg, _ = val_setup
    report = invariance_api.main([
        PIRL_CFG, f'pirl={tiny_pirl_ckpt}', '--repr', 'pirl', '--transforms', 'jigsaw',
        'rotation', '--num-images', '7', '--seed', '1', '--work-dir', str(tmp_path),
        '--cfg-options', *knn_options(cfg.knn_eval.val_dataloader.dataset.data_root)])
    assert report['patch_size'] == 16  # the config's JigsawPatches patch size
    assert report['num_images'] == 7
    for t in ('jigsaw', 'rotation'):
        s = report['stats'][t]['pirl']
        assert 0 <= s['min'] <= s['median'] <= s['max'] <= 2 and s['n'] == 7
        png = tmp_path / f'invariance_{t}.png'
        assert png.read_bytes()[:8] == PNG_SIGNATURE and mpimg.imread(str(png)).ndim == 3
    assert json.loads((tmp_path / 'invariance.json').read_text())['stats'] == report['stats']
    assert 0 < report['reference']['pirl']['mean'] <= 2
    out = capsys.readouterr().out
    assert '| pirl | jigsaw |' in out and 'invariance_rotation.png' in out
    assert '| pirl | (other image) |' in out

    # by hand: the full checkpoint (backbone, f, g) in a fresh model, the same 7 images
    model = build_model(cfg).eval()
    state = load_checkpoint_safe(tiny_pirl_ckpt)['state_dict']
    missing = model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith('memory_bank.')}, strict=False)
    assert not [k for k in missing.missing_keys if not k.startswith('memory_bank.')]
    idx = subset_indices(12, 7, seed=1)
    dataset = build_dataloader(cfg.knn_eval.val_dataloader, seed=0).dataset
    imgs = torch.stack([dataset[i]['inputs'] for i in idx]).float()
    gen = torch.Generator().manual_seed(1)
    tiles = torch.stack([jigsaw_patch_view(img, gen) for img in imgs])  # 7 x 9 x 3 x 10 x 10
    tiles = F.interpolate(tiles.flatten(0, 1), size=(16, 16), mode='bilinear',
                          align_corners=False)
    f = F.normalize(model.neck.fc(_pooled_res5(model.backbone, _preprocess(cfg, imgs))), dim=1)
    # PIRL (transformed_bn_stats=False) trained g on patches normalised with their own batch
    # statistics: a train-mode copy of the backbone does that
    assert model.transformed_bn_stats is False
    bn = model.backbone.bn1 if hasattr(model.backbone, 'bn1') else model.backbone.norm1
    running = bn.running_mean.clone()
    train_bb = copy.deepcopy(model.backbone)
    train_bb.train()  # (mmpretrain's ResNet.train returns None)
    per_patch = model.transform_neck.patch_fc(_pooled_res5(train_bb, _preprocess(cfg, tiles)))
    g = F.normalize(model.transform_neck.fc(per_patch.view(7, -1)), dim=1)
    ref = (f - g).norm(dim=1)
    got = torch.tensor(report['distances']['jigsaw']['pirl'])
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # and the eval-mode patch branch (image statistics) would have given other distances
    g_eval = F.normalize(model.transform_neck.fc(model.transform_neck.patch_fc(
        _pooled_res5(model.backbone, _preprocess(cfg, tiles))).view(7, -1)), dim=1)
    assert not torch.allclose((f - g_eval).norm(dim=1), ref, atol=1e-3)
    torch.testing.assert_close(bn.running_mean, running)
    # PIRL's g on patches is far from invariant at 2 iterations, the backbone views differ
    assert not torch.allclose(got, torch.tensor(report['distances']['rotation']['pirl']))


def test_pirl_repr_errors(tiny_tree, tiny_pirl_ckpt, tiny_moco_ckpt, tmp_path):
    moco_opts = options_dict(tiny_moco_options(tiny_tree, str(tmp_path)))
    with pytest.raises(ValueError, match='--repr pirl needs a PIRL model.*builds MoCo'):
        invariance_api.run(MOCO_FMNIST_CFG, [tiny_moco_ckpt], str(tmp_path),
                           representation='pirl', num_images=4, cfg_options=moco_opts,
                           progress=False)
    # the MoCo checkpoint with the backbone representation works
    rep = invariance_api.run(MOCO_FMNIST_CFG, [tiny_moco_ckpt], str(tmp_path / 'moco'),
                             transforms=['augment'], num_images=4, cfg_options=moco_opts,
                             progress=False)
    assert 0 <= rep['stats']['augment']['iter_2']['mean'] <= 2
    assert (tmp_path / 'moco' / 'invariance_augment.png').read_bytes()[:8] == PNG_SIGNATURE
    opts = options_dict(knn_options(tiny_tree))
    bb = str(tmp_path / 'pirl_backbone.pth')
    extract_backbone(tiny_pirl_ckpt, bb)
    with pytest.raises(ValueError, match='no PIRL head weights.*full PIRL training checkpoint'):
        invariance_api.run(PIRL_CFG, [bb], str(tmp_path), representation='pirl',
                           num_images=4, cfg_options=opts, progress=False)
    with pytest.raises(ValueError, match=r"unknown transform\(s\) \['blur'\]"):
        invariance_api.run(PIRL_CFG, ['random'], str(tmp_path), transforms=['blur'],
                           cfg_options=opts)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        invariance_api.run(PIRL_CFG, ['a=missing.pth'], str(tmp_path), cfg_options=opts)
