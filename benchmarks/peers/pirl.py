"""PIRL-style with lightly's pieces on our backbone (lightly has no PIRL model)."""
import math

from benchmarks.peers.common import Peer, interp_notes, min_scale, view_args, view_spec
from mmssl_ext.models.utils import bn_running_stats_frozen


class PIRLPeer(Peer):
    """PIRL-style with lightly's pieces (lightly has no PIRL model / loss): its ``Jigsaw``
    transform (the core of ``PIRLTransform``) and ``SimCLRViewTransform``, ``ProjectionHead``
    blocks for f and g, ``NTXentLoss`` with a memory bank between g(jigsaw) and f(image)."""

    name = 'pirl'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import NTXentLoss
        from lightly.models.modules.heads import ProjectionHead
        model = cfg.model
        neck, tneck = model.neck, model.transform_neck
        if neck.type != 'LinearNeck' or neck.get('norm_cfg') or tneck.type != \
                'JigsawProjectionNeck':
            raise ValueError(f'unmapped PIRL necks {neck} / {tneck}')
        if model.get('transformed_bn_stats', False):
            raise ValueError('transformed_bn_stats=True is not mapped')
        self.num_patches = tneck.get('num_patches', 9)
        pc = tneck.get('patch_channels', 128)
        self.image_head = ProjectionHead([(neck.in_channels, neck.out_channels, None, None)])
        self.patch_head = ProjectionHead([(tneck.in_channels, pc, None, None)])
        self.jigsaw_head = ProjectionHead([(self.num_patches * pc, tneck.out_channels, None,
                                            None)])
        loss = model.loss
        if loss.type != 'InfoNCELoss':
            raise ValueError(f'unmapped PIRL loss {loss}')
        negatives = model.memory_bank.num_negatives
        self.criterion = NTXentLoss(temperature=loss.temperature,
                                    memory_bank_size=(negatives, neck.out_channels))
        self.hparams.update(
            image_head=f'ProjectionHead linear {neck.in_channels}->{neck.out_channels}',
            jigsaw_head=f'ProjectionHead linear {tneck.in_channels}->{pc} per patch, concat, '
                        f'linear {self.num_patches * pc}->{tneck.out_channels}',
            loss=f'NTXentLoss(temperature={loss.temperature}, memory_bank_size=({negatives}, '
                 f'{neck.out_channels})) of (g(jigsaw), f(image))',
            bn_running_stats='image views only')
        self.notes += [
            'lightly has no PIRL model / loss / per-image memory bank: PIRL-style NT-Xent '
            f'between g(jigsaw) and f(image) with a FIFO queue of {negatives} f embeddings as '
            'negatives; ours: InfoNCE against the per-image bank entry m_I (momentum '
            f"{model.memory_bank.momentum}), {negatives} negatives sampled from the bank of "
            f"{model.memory_bank.length}, loss = {model.loss_lambda} L(m_I, g) + "
            f'{1 - model.loss_lambda} L(m_I, f)',
            "PIRLTransform not usable as is (jigsaw of the uncropped, pre-sized image, patches "
            "without gaps, image view without jitter / flip): lightly's Jigsaw after a random "
            'resized crop, as our JigsawPatches']

    def trained_modules(self):
        return [self.backbone, self.image_head, self.patch_head, self.jigsaw_head]

    def transform(self):
        from lightly.transforms import Jigsaw, SimCLRViewTransform
        from lightly.transforms import torchvision_transforms as T
        from lightly.transforms.multi_view_transform import MultiViewTransform
        from lightly.transforms.utils import IMAGENET_NORMALIZE
        views = [t for t in self.cfg.train_dataloader.dataset.pipeline if t['type'] == 'PIRLViews']
        if len(views) != 1:
            raise ValueError('PIRL: expected one PIRLViews transform')
        image = view_spec(views[0]['image_pipeline'])
        tp = views[0]['transform_pipeline']
        if len(tp) != 1 or tp[0]['type'] != 'JigsawPatches':
            raise ValueError(f'unmapped PIRL transform pipeline {tp}')
        jig = tp[0]
        grid, crop, size = jig.get('grid', 3), jig.get('crop_size', 255), jig.get('patch_size', 64)
        if grid * grid != self.num_patches:
            raise ValueError('PIRL: grid and num_patches differ')
        if jig.get('num_permutations', 1000) != math.factorial(grid * grid):
            self.notes.append('lightly Jigsaw draws from all permutations; the config uses '
                              f"a set of {jig.get('num_permutations', 1000)}")
        patch = dict(view_spec([dict(type='RandomResizedCrop', scale=size)]
                               + list(jig.get('patch_pipeline') or [])))
        image_view = SimCLRViewTransform(input_size=image['size'], min_scale=min_scale(image),
                                         **view_args(image, self.normalize_views))
        patch_tf = [T.RandomApply([T.ColorJitter(brightness=patch['cj_bright'],
                                                 contrast=patch['cj_contrast'],
                                                 saturation=patch['cj_sat'],
                                                 hue=patch['cj_hue'])], p=patch['cj_prob'])]
        if patch['random_gray_scale']:
            patch_tf.append(T.RandomGrayscale(p=patch['random_gray_scale']))
        if patch['hf_prob'] or patch['solarization_prob'] or patch['gaussian_blur']:
            raise ValueError('PIRL: unmapped patch transform')
        patch_tf += [T.ToTensor(), T.Normalize(**IMAGENET_NORMALIZE)]
        jigsaw_view = T.Compose([
            T.RandomResizedCrop(crop, scale=tuple(jig.get('crop_scale', (0.6, 1.0)))),
            Jigsaw(n_grid=grid, img_size=crop, crop_size=size, transform=T.Compose(patch_tf)),
        ])
        specs = [image, dict(size=size, grid=grid, crop_size=crop,
                             crop_scale=tuple(jig.get('crop_scale', (0.6, 1.0))), **{
                                 k: patch[k] for k in ('cj_prob', 'cj_bright', 'cj_contrast')})]
        self.notes += interp_notes(specs[:1], [image_view])
        return MultiViewTransform([image_view, jigsaw_view]), specs

    def loss(self, views, it, iters):
        img, patches = views
        f = self.image_head(self.backbone(img))
        with bn_running_stats_frozen(self.backbone):
            feats = self.backbone(patches.flatten(0, 1))
        g = self.jigsaw_head(self.patch_head(feats).reshape(img.shape[0], -1))
        return self.criterion(g, f)
