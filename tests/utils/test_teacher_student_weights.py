"""Teacher-student checkpoints: extraction and kNN default to the backbone the method's authors
evaluate (DINO: the EMA teacher; MoCo v2 / v3, BYOL: the student), ``--weights`` picks the
other, and the tools say which one they used.  Real checkpoints: 2 tools/train.py iterations of
each method's Fashion-MNIST config on the tiny tree (1 for DINO, BYOL, MoCo v3)."""
import os.path as osp

import pytest
import torch

from mmssl_ext.cli import extract_backbone as extract_cli
from mmssl_ext.cli import knn_eval
from mmssl_ext.utils.checkpoint import (extract_backbone, load_backbone_weights,
                                        select_backbone)
from mmssl_ext.utils.config import build_model, load_config
from tests.helpers import MOCO_FMNIST_CFG, REPO, tiny_moco_options

DINO_CFG = osp.join(REPO, 'configs/dino/dino_r18-w32_1xb64-3000it_fmnist.py')
BYOL_CFG = osp.join(REPO, 'configs/byol/byol_r18-w32_1xb64-3000it_fmnist.py')
MOCOV3_CFG = osp.join(REPO, 'configs/mocov3/mocov3_r18-w32_1xb64-3000it_fmnist.py')

# method -> (config, key prefix of the teacher's backbone, the backbone the authors evaluate)
METHODS = {
    'dino': (DINO_CFG, 'teacher.module.0.', 'teacher'),
    'byol': (BYOL_CFG, 'target_net.module.0.', 'student'),
    'mocov2': (MOCO_FMNIST_CFG, 'encoder_k.module.0.', 'student'),
    'mocov3': (MOCOV3_CFG, 'momentum_encoder.module.0.', 'student'),
}


def _train_options(tree, work):
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1']


@pytest.fixture(scope='module')
def checkpoints(tiny_tree, tiny_moco_ckpt, tmp_path_factory):
    from mmssl_ext.cli import train as train_api
    out = {'mocov2': tiny_moco_ckpt}
    for name in ('dino', 'byol', 'mocov3'):
        work = str(tmp_path_factory.mktemp(f'tiny_{name}'))
        train_api.main([METHODS[name][0], '--work-dir', work, '--cfg-options',
                        *_train_options(tiny_tree, work)])
        out[name] = osp.join(work, 'iter_1.pth')
    return out


def _state(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def _under(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _loaded(model, expected):
    return {k: v for k, v in model.backbone.state_dict().items() if k in expected}


def _assert_backbone(loaded, expected):
    assert set(loaded) == set(expected)
    for k, v in expected.items():
        assert torch.equal(loaded[k], v), k


@pytest.mark.parametrize('method', sorted(METHODS))
def test_default_and_flag_pick_the_right_backbone(method, checkpoints, tmp_path):
    config, teacher_prefix, evaluated = METHODS[method]
    state = _state(checkpoints[method])
    student, teacher = _under(state, 'backbone.'), _under(state, teacher_prefix)
    assert student and set(student) == set(teacher)
    # after a step the momentum / EMA copy differs from the trained network
    assert any(not torch.equal(student[k], teacher[k]) for k in student
               if student[k].is_floating_point())
    want = {'teacher': teacher, 'student': student}
    model = build_model(load_config(config), 0)  # every load below replaces all its weights
    for weights in ('default', 'teacher', 'student'):
        which = evaluated if weights == 'default' else weights
        out = str(tmp_path / f'{weights}.pth')
        info = extract_backbone(checkpoints[method], out, weights=weights)
        assert info['weights'] == which
        saved = torch.load(out, map_location='cpu', weights_only=True)
        _assert_backbone(saved['state_dict'], want[which])
        assert saved['meta']['weights'] == which
        # knn_eval / the analysis tools load through load_backbone_weights
        choice = load_backbone_weights(model, checkpoints[method], weights=weights)['choice']
        assert choice.weights == which
        _assert_backbone(_loaded(model, want[which]), want[which])
        # the extracted file loads the same weights, and refuses the other name
        load_backbone_weights(model, checkpoints[method], weights='student' if which ==
                              'teacher' else 'teacher')  # the other first: the load must show
        load_backbone_weights(model, out, weights=which)
        _assert_backbone(_loaded(model, want[which]), want[which])
        other = 'student' if which == 'teacher' else 'teacher'
        with pytest.raises(ValueError, match=f'holds the {which} backbone, not a {other}'):
            load_backbone_weights(model, out, weights=other)


def test_descriptions_name_the_choice(checkpoints):
    state = _state(checkpoints['dino'])
    default = select_backbone(state)
    assert default.prefix == 'teacher.module.0.'
    assert "DINO's EMA teacher" in default.description
    assert 'the weights its authors evaluate' in default.description
    student = select_backbone(state, 'student')
    assert student.prefix == 'backbone.' and 'NOT the weights its authors' in student.description
    moco = select_backbone(_state(checkpoints['mocov2']))
    assert moco.prefix == 'backbone.' and "MoCo v1/v2's query encoder" in moco.description


def test_single_network_checkpoints(tiny_pirl_ckpt, tmp_path):
    choice = select_backbone(_state(tiny_pirl_ckpt))
    assert (choice.prefix, choice.weights) == ('backbone.', 'backbone')
    with pytest.raises(ValueError, match='holds one backbone, not a teacher'):
        select_backbone(_state(tiny_pirl_ckpt), 'teacher', source='pirl.pth')
    with pytest.raises(ValueError, match='weights must be one of'):
        select_backbone(_state(tiny_pirl_ckpt), 'ema')
    with pytest.raises(ValueError, match='either a prefix'):
        extract_backbone(tiny_pirl_ckpt, str(tmp_path / 'x.pth'), prefix='backbone.',
                         weights='teacher')


def test_extract_cli_says_which(checkpoints, tmp_path, capsys):
    out = str(tmp_path / 'student.pth')
    extract_cli.main([checkpoints['dino'], out, '--weights', 'student'])
    printed = capsys.readouterr().out
    assert "DINO's student (backbone.*), NOT the weights its authors evaluate" in printed
    # an explicit prefix still works as before
    info = extract_cli.main([checkpoints['dino'], out, '--prefix', 'teacher.module.0.'])
    _assert_backbone(torch.load(out, weights_only=True)['state_dict'],
                     _under(_state(checkpoints['dino']), 'teacher.module.0.'))
    assert info['prefix'] == 'teacher.module.0.'


def test_knn_eval_default_is_teacher_for_dino(checkpoints, tiny_tree, tmp_path, capsys):
    opts = [o for o in tiny_moco_options(tiny_tree, str(tmp_path)) if o.startswith('knn_eval')]
    res = {}
    for weights in ('default', 'teacher', 'student'):
        res[weights] = knn_eval.main([DINO_CFG, checkpoints['dino'], '--ks', '3', '--weights',
                                      weights, '--cfg-options', *opts])['checkpoint']
        printed = capsys.readouterr().out
        name = 'student' if weights == 'student' else 'EMA teacher'
        assert f"checkpoint weights: DINO's {name}" in printed
    assert res['default'] == res['teacher']


def test_quality_harness_evaluates_both_and_names_them(checkpoints, tiny_pirl_ckpt,
                                                       monkeypatch):
    from benchmarks import quality
    calls = []
    monkeypatch.setattr(quality, 'evaluate', lambda cfg, ckpt, probe, weights='default': (
        calls.append(weights) or dict(k20_top1=1.0, k200_top1=2.0, linear_top1=3.0)))
    assert quality.evaluate_other_weights(None, tiny_pirl_ckpt, 10) == {}
    row = quality.evaluate_other_weights(None, checkpoints['dino'], 10)
    assert calls == ['student'] and row['weights'] == 'teacher'
    assert row['other_weights'] == dict(weights='student', k20_top1=1.0, k200_top1=2.0,
                                        linear_top1=3.0)
    row.update(k20_top1=4.0, k200_top1=5.0, linear_top1=6.0, iterations=2, batch_size=4)
    md = quality.markdown(dict(preset='cpu', date='today', budget=1, full_train=False,
                               probe_train=10, rows={'dino': row}, command='x', machine='y'))
    assert '| dino (teacher) | 4.00 |' in md and '| dino (student) | 1.00 |' in md
