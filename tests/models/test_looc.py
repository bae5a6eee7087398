"""LooC: the loss against a loop reference, the leave-one-out views, the model's keys / queues /
representations, exact resume and 2-rank DDP of the queues."""
import copy
import math
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmcv.transforms import BaseTransform
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmssl_ext  # noqa: F401
from mmssl_ext.models.losses.looc_loss import LooCLoss
from mmssl_ext.registry import MODELS, TRANSFORMS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO, free_port, gloo_group

FMNIST_CFG = f'{REPO}/configs/looc/looc_r18-w32_1xb64-3000it_fmnist.py'
S, B, D, K, T = 3, 4, 8, 5, 0.2


def _unit(*shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def _reference(q, keys, queues, t=T):
    """The loss written out per image and term (float64 numpy): Z_0 with each key as the
    positive, Z_i with k_i as the positive and the other keys of the image as negatives."""
    q, keys, queues = q.numpy(), keys.numpy(), queues.numpy()
    s, b = q.shape[:2]

    def ce(pos, negs):
        logits = np.array([pos] + list(negs)) / t
        return -(logits[0] - math.log(np.exp(logits).sum()))

    total = 0.0
    for n in range(b):
        for j in range(s):  # space 0
            negs = [q[0, n] @ queues[0][:, m] for m in range(queues.shape[2])]
            total += ce(q[0, n] @ keys[0, j, n], negs) / s / b
        for i in range(1, s):
            negs = [q[i, n] @ keys[i, j, n] for j in range(s) if j != i]
            negs += [q[i, n] @ queues[i][:, m] for m in range(queues.shape[2])]
            total += ce(q[i, n] @ keys[i, i, n], negs) / b
    return total / s


def test_loss_matches_loop_reference_and_depends_on_which_key_is_positive():
    g = torch.Generator().manual_seed(0)
    q, keys, queues = _unit(S, B, D, gen=g), _unit(S, S, B, D, gen=g), _unit(S, K, D, gen=g)
    queues = queues.transpose(1, 2)  # (S, D, K)
    loss = LooCLoss(temperature=T)(q, keys, queues).item()
    assert loss == pytest.approx(_reference(q, keys, queues), rel=1e-10)
    # the key views of space 1 swapped (k_1 <-> k_2): another positive, another value
    swapped = keys.clone()
    swapped[1, [1, 2]] = keys[1, [2, 1]]
    assert abs(LooCLoss(temperature=T)(q, swapped, queues).item() - loss) > 1e-3
    # the same swap in space 0 leaves it unchanged: there every key is a positive
    swapped = keys.clone()
    swapped[0, [1, 2]] = keys[0, [2, 1]]
    assert LooCLoss(temperature=T)(q, swapped, queues).item() == pytest.approx(loss, rel=1e-12)
    with pytest.raises(ValueError, match='keys of shape'):
        LooCLoss()(q, keys[:, :2], queues)
    with pytest.raises(ValueError, match='temperature must be positive'):
        LooCLoss(temperature=0)


@TRANSFORMS.register_module(force=True)
class _WriteDraw(BaseTransform):
    """Test augmentation: draws from np.random and writes the draw into channel ``c`` of the
    top-left pixel, so the view shows which parameter it got."""

    def __init__(self, channel):
        self.channel = channel

    def transform(self, results):
        results['img'] = results['img'].copy()
        results['img'][0, 0, self.channel] = np.random.randint(1, 250)
        return results


def test_views_share_exactly_the_left_out_augmentation_with_the_query():
    views_t = TRANSFORMS.build(dict(
        type='LooCViews', base_pipeline=[],
        augmentations=[[dict(type='_WriteDraw', channel=0)], [dict(type='_WriteDraw', channel=1)],
                       [dict(type='_WriteDraw', channel=2)]]))
    assert views_t.num_views == 5
    np.random.seed(0)
    out = views_t(dict(img=np.zeros((4, 4, 3), np.uint8)))
    q, k0, *ks = [v[0, 0] for v in out['img']]
    assert len(ks) == 3
    assert all(q[c] != k0[c] for c in range(3))  # k_0: every parameter drawn anew
    for i, k in enumerate(ks):  # k_i: augmentation i as the query's, the others anew
        for c in range(3):
            assert (k[c] == q[c]) == (c == i), (i, c, q, k)
    # reproducible from numpy's seed (the replay restores the stream after it)
    np.random.seed(0)
    again = views_t(dict(img=np.zeros((4, 4, 3), np.uint8)))
    assert all(np.array_equal(a, b) for a, b in zip(out['img'], again['img']))
    with pytest.raises(ValueError, match='at least one augmentation'):
        TRANSFORMS.build(dict(type='LooCViews', base_pipeline=[], augmentations=[]))


def test_config_views_share_colour_or_rotation_with_the_query():
    """The Fashion-MNIST config's own LooCViews on an asymmetric image, without crop and flip:
    the colour key is the query up to a rotation, the rotation key has the query's rotation."""
    cfg = Config.fromfile(FMNIST_CFG)
    view_cfg = copy.deepcopy(cfg.train_pipeline[1])
    view_cfg['base_pipeline'] = []
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        views_t = TRANSFORMS.build(view_cfg)
    img = np.zeros((8, 8, 3), np.uint8)
    img[0, :3] = 200  # a bar in the top-left corner: each rotation puts it elsewhere
    img[5, 5] = 90

    def corner(v):
        return tuple(np.argwhere(v[..., 0] == v[..., 0].max())[0])

    k0_like_q = 0
    for seed in range(8):
        np.random.seed(seed)
        q, k0, k_color, k_rot = views_t(dict(img=img.copy()))['img']
        assert corner(k_rot) == corner(q)  # the query's rotation
        assert any(np.array_equal(np.rot90(k_color, r), q) for r in range(4))  # its colour
        k0_like_q += any(np.array_equal(np.rot90(k0, r), q) for r in range(4))
    assert k0_like_q < 8  # k_0 draws the colour anew (equal only when neither jitter applies)


def _tiny_model(queue_len=8):
    cfg = Config.fromfile(FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.queue_len = queue_len
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    return model


def test_model_keys_queues_and_representations():
    torch.manual_seed(0)
    model = _tiny_model()
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(B, 3, 32, 32, generator=g) for _ in range(4)]
    queue_before = model.queue.clone()
    # the reference: at the first step the momentum encoder is a copy of the online one (same
    # train-mode BN over the concatenated key views)
    ref = copy.deepcopy(model)
    with torch.no_grad():
        fq = ref.backbone(views[0])
        query = torch.stack([F.normalize(h(fq)[0], dim=1) for h in ref.heads])
        fk = ref.backbone(torch.cat(views[1:]))
        keys = torch.stack([F.normalize(h(fk)[0], dim=1) for h in ref.heads]).reshape(
            3, 3, B, -1)
    out = model.loss(views, [None] * B)
    expected = LooCLoss(temperature=0.2)(query.double(), keys.double(), queue_before.double())
    assert out['loss'].item() == pytest.approx(expected.item(), rel=1e-4)
    # space s enqueued its positive key view k_s at the pointer, the rest of the queue stays
    for s in range(3):
        torch.testing.assert_close(model.queue[s][:, :B], keys[s, s].t(), rtol=1e-4, atol=1e-5)
    assert torch.equal(model.queue[:, :, B:], queue_before[:, :, B:])
    assert int(model.queue_ptr) == B
    # views in another order (k_1 <-> k_2) give another loss
    swapped = _tiny_model()
    swapped.load_state_dict(ref.state_dict())
    other = swapped.loss([views[0], views[1], views[3], views[2]], [None] * B)
    assert abs(other['loss'].item() - out['loss'].item()) > 1e-4
    out['loss'].backward()
    assert all(h[0].fc.weight.grad is not None if hasattr(h[0], 'fc') else True
               for h in [[m] for m in model.heads])
    assert sum(p.grad.abs().sum() for p in model.backbone.parameters()
               if p.grad is not None) > 0
    assert all(p.grad is None for p in model.encoder_k.parameters())
    # representations: V (the backbone's outputs), the 3 concatenated unit embeddings, both
    x = views[0][:2]
    model.eval()
    assert model.extract_feat(x)[-1].shape == (2, 256, 1, 1)
    emb = model.representation_encoder('embeddings')(x)[0]
    assert emb.shape == (2, 3 * 128)
    torch.testing.assert_close(emb.reshape(2, 3, 128).norm(dim=2), torch.ones(2, 3))
    both = model.representation_encoder('backbone+embeddings')(x)[0]
    assert both.shape == (2, 256 + 3 * 128)
    torch.testing.assert_close(both[:, 256:], emb)
    with pytest.raises(ValueError, match='representation must be one of'):
        model.representation_encoder('heads')
    with pytest.raises(ValueError, match='expects 4 views'):
        model.loss(views[:3], [None] * B)
    with pytest.raises(ValueError, match='multiple of the global batch'):
        _tiny_model(queue_len=6).loss(views, [None] * B)


def test_looc_exact_resume(tiny_tree, tmp_path):
    """The queues + pointer (buffers), the momentum encoder, the leave-one-out views' draws."""
    # batch 2 over 6 images: 3 iterations per epoch, the resume lands on an epoch boundary
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=2',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=6', 'model.queue_len=16', *_COMMON]
    _check_exact_resume(FMNIST_CFG, opts, tmp_path, controls=('none', ),
                        buffers=['queue', 'queue_ptr', 'encoder_k.steps'])


def test_knn_eval_representation_option(tiny_tree, tmp_path):
    """tools/knn_eval.py --representation: the concatenated embedding spaces of the model in the
    checkpoint (heads loaded from it, not the random ones of the freshly built model)."""
    import mmssl_ext.cli.knn_eval as knn_eval
    from mmssl_ext.evaluation.features import extract_features
    from mmssl_ext.utils.config import build_dataloader, load_config
    torch.manual_seed(123)
    saved = _tiny_model(queue_len=16)
    ckpt = str(tmp_path / 'looc.pth')
    torch.save(dict(state_dict=saved.state_dict()), ckpt)
    opts = {f'knn_eval.{s}_dataloader.{k}': v for s in ('train', 'val')
            for k, v in (('dataset.data_root', tiny_tree), ('num_workers', 0),
                         ('batch_size', 8), ('persistent_workers', False))}
    opts['model.queue_len'] = 16
    seen = {}

    def spy(model, dataloader, backbone=None, **kwargs):
        feats, labels = extract_features(model, dataloader, backbone=backbone, **kwargs)
        seen.setdefault(getattr(backbone, 'representation', 'backbone'), feats)
        return feats, labels

    original, knn_eval.extract_features = knn_eval.extract_features, spy
    try:
        res = knn_eval.run(FMNIST_CFG, ckpt, cfg_options=opts, ks=[5], progress=False,
                           representation='embeddings', seed=7)
        assert 0 <= res['checkpoint']['k5_top1'] <= 100
    finally:
        knn_eval.extract_features = original
    cfg = load_config(FMNIST_CFG)
    cfg.merge_from_dict(opts)
    expected, _ = extract_features(saved, build_dataloader(cfg.knn_eval.train_dataloader),
                                   backbone=saved.representation_encoder('embeddings'),
                                   progress=False)
    assert expected.shape == (24, 3 * 128)
    torch.testing.assert_close(seen['embeddings'], expected)
    backbone_only = str(tmp_path / 'backbone.pth')
    torch.save({k[len('backbone.'):]: v for k, v in saved.state_dict().items()
                if k.startswith('backbone.')}, backbone_only)
    with pytest.raises(ValueError, match='needs the full training checkpoint'):
        knn_eval.representation_backbone(_tiny_model(), 'embeddings', backbone_only)
    with pytest.raises(ValueError, match='has one representation, its backbone'):
        knn_eval.representation_backbone(torch.nn.Linear(2, 2), 'embeddings')


def _ddp_worker(rank, port, out_dir):
    with gloo_group(rank, port, 2):
        torch.manual_seed(0)
        model = _tiny_model(queue_len=16)
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own images
        for _ in range(2):
            views = [torch.randn(B, 3, 16, 16, generator=g) for _ in range(4)]
            model.loss(views, [None] * B)
        torch.save(dict(queue=model.queue.clone(), ptr=model.queue_ptr.clone()),
                   os.path.join(out_dir, f'rank{rank}.pth'))


def test_ddp_queues_identical_across_ranks(tmp_path):
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in range(2))
    # 2 steps x 2 ranks x 4 keys enqueued per space, the same on both ranks
    assert int(r0['ptr']) == int(r1['ptr']) == 16 % 16
    assert torch.equal(r0['queue'], r1['queue'])
    # rank 0's keys first, then rank 1's: the two halves of a step differ
    assert not torch.allclose(r0['queue'][:, :, :4], r0['queue'][:, :, 4:8])
