"""configs/_base_/tensorboard.py: a training run with KNNEvalHook writes TensorBoard event files
holding the loss terms and the online kNN curve; the analysis tools' figures reach it too."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config
from PIL import Image

from mmssl_ext.cli import train as train_api
from mmssl_ext.cli.analysis_common import publish_figures, remote_vis_backends
from mmssl_ext.evaluation.plots import new_figure, save_figure
from tests.helpers import MOCO_FMNIST_CFG, REPO, tiny_moco_options

pytest.importorskip('tensorboard')
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator)

TB_BASE = f'{REPO}/configs/_base_/tensorboard.py'


def tensorboard_config(tmp_path, base: str) -> str:
    """A config that switches TensorBoard on as configs/_base_/tensorboard.py documents."""
    path = tmp_path / 'with_tensorboard.py'
    path.write_text(f"_base_ = [{base!r}, {TB_BASE!r}]\n"
                    "visualizer = dict(vis_backends={{_base_.tensorboard_vis_backends}})\n")
    return str(path)


def events(folder: str) -> EventAccumulator:
    files = glob.glob(osp.join(folder, '**', 'events.out.tfevents.*'), recursive=True)
    assert files, f'no TensorBoard event file under {folder}'
    acc = EventAccumulator(osp.dirname(files[0]), size_guidance={'images': 0, 'scalars': 0})
    acc.Reload()
    return acc


def test_training_run_writes_loss_and_knn_scalars(tiny_tree, tmp_path):
    work = str(tmp_path / 'w')
    cfg_path = tensorboard_config(tmp_path, MOCO_FMNIST_CFG)
    args = train_api.parse_args([cfg_path, '--work-dir', work, '--cfg-options',
                                 *tiny_moco_options(tiny_tree, work, max_iters=2,
                                                    ckpt_interval=2)])
    cfg = train_api.merge_args(Config.fromfile(args.config), args)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend',
                                                                'TensorboardVisBackend']
    knn = cfg.knn_eval
    cfg.custom_hooks = [dict(type='KNNEvalHook', interval=1, by_epoch=False, ks=(3, ),
                             topk=(1, ), train_dataloader=knn.train_dataloader,
                             val_dataloader=knn.val_dataloader)]
    runner = train_api.build_runner(cfg)
    runner.train()
    hook = [h for h in runner.hooks if type(h).__name__ == 'KNNEvalHook'][0]

    acc = events(work)
    scalars = acc.Tags()['scalars']
    assert 'knn/k3_top1' in scalars and 'loss' in scalars, scalars
    knn_events = acc.Scalars('knn/k3_top1')
    assert [e.step for e in knn_events] == [1, 2]  # one point per evaluation
    assert knn_events[-1].value == pytest.approx(hook.last_results['k3_top1'], abs=1e-4)
    assert [e.step for e in acc.Scalars('loss')] == [1, 2]
    # the same loss values as the local backend's scalars.json
    local = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))[0]
    with open(local) as f:
        logged = [json.loads(line) for line in f if '"loss"' in line]
    assert [e.value for e in acc.Scalars('loss')] == pytest.approx(
        [r['loss'] for r in logged], rel=1e-5)


def test_analysis_figures_reach_the_backend(tmp_path):
    fig = new_figure((2, 2))
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    png = save_figure(fig, str(tmp_path / 'layer_probe.png'))
    plain = Config.fromfile(MOCO_FMNIST_CFG)
    assert remote_vis_backends(plain) == [] and publish_figures(plain, str(tmp_path), [png]) == 0
    assert not glob.glob(str(tmp_path / '**' / 'events.out.tfevents.*'), recursive=True)

    cfg = Config.fromfile(tensorboard_config(tmp_path, MOCO_FMNIST_CFG))
    assert publish_figures(cfg, str(tmp_path / 'out'), [png]) == 1
    acc = events(str(tmp_path / 'out'))
    assert acc.Tags()['images'] == ['layer_probe']
    image = acc.Images('layer_probe')[0]
    with Image.open(png) as img:
        assert (image.width, image.height) == img.size


def test_clusterfit_cluster_summary_reaches_the_backend(tiny_tree, tmp_path):
    from mmssl_ext.cli.clusterfit import SUMMARY_SCALARS, main
    out = str(tmp_path / 'clusters')
    knn = [o for o in tiny_moco_options(tiny_tree, '') if o.startswith('knn_eval.')]
    summary = main(['cluster', '--config', tensorboard_config(tmp_path, MOCO_FMNIST_CFG),
                    '--checkpoint', 'random', '--k', '3', '--out-dir', out, '--cfg-options',
                    *knn])
    acc = events(out)
    assert sorted(acc.Tags()['scalars']) == sorted(f'clusterfit/{k}' for k in SUMMARY_SCALARS)
    assert acc.Scalars('clusterfit/k')[0].value == 3
    assert acc.Scalars('clusterfit/nmi_vs_dataset_labels')[0].value == pytest.approx(
        summary['nmi_vs_dataset_labels'], abs=1e-6)
    assert acc.Scalars('clusterfit/objective')[0].value == pytest.approx(
        summary['objective'], rel=1e-6)
