"""benchmarks.collapse on a tiny budget: every row's change reaches the model, a run writes the
JSON / markdown / figure with the monitor's curves and the probe's top-1."""
import json
import math
import os.path as osp

import torch

from benchmarks import collapse


def _args(tiny_tree, tmp_path, *rows):
    return ['--rows', *rows, '--iters', '2', '--data-root', str(tiny_tree), '--probe-train',
            '12', '--probe-val', '6', '--probe-samples', '8', '--workers', '0',
            '--batch-size', '4', '--out', str(tmp_path / 'out'),
            '--work-dir', str(tmp_path / 'work')]


def test_each_row_changes_what_it_says(tiny_tree, tmp_path):
    from mmssl_ext.utils.config import build_model
    collapse.register_variants()

    def model(name):
        return build_model(collapse.build_cfg(
            name, collapse.parse_args(_args(tiny_tree, tmp_path, name))))

    def batch_norms(m):
        bn = torch.nn.modules.batchnorm._BatchNorm
        return [n for n, x in m.named_modules() if isinstance(x, bn)]

    byol, no_bn = model('byol'), model('byol-no-bn')
    assert any(n.startswith(('neck.', 'head.')) for n in batch_norms(byol))
    assert not any(n.startswith(('neck.', 'head.', 'target_net.1'))
                   for n in batch_norms(no_bn))
    assert model('dino-no-centering').dino_loss.center_momentum == 1.0
    sharp = model('dino-no-sharpening').dino_loss
    assert sharp.teacher_temperature(0) == sharp.teacher_temperature(10 ** 6) == \
        sharp.student_temp
    # the stop-gradient: the target's gradient is nonzero only without it
    for name, expect in (('simsiam', False), ('simsiam-no-stopgrad', True)):
        head = model(name).head
        d = head.predictor.fc0.in_features
        z1, z2 = torch.randn(4, d, requires_grad=True), torch.randn(4, d, requires_grad=True)
        head.loss(z1, z2).backward()
        assert (z2.grad is not None and bool(z2.grad.abs().sum() > 0)) == expect, name


def test_a_tiny_run_writes_the_curves(tiny_tree, tmp_path):
    report = collapse.main(_args(tiny_tree, tmp_path, 'dino-no-centering'))
    base = osp.join(str(tmp_path / 'out'), 'collapse_dino-ablations_cpu-2it_seed0')
    assert osp.isfile(base + '.md') and osp.isfile(base + '.png')
    with open(base + '.json') as f:
        saved = json.load(f)
    row = saved['rows']['dino-no-centering']
    assert [h['step'] for h in row['history']] == [0, 1, 2]
    assert row['stopped'] is None and 0 <= row['linear_top1'] <= 100
    assert row['seconds_per_check'] > 0 and row['ln_k'] == round(math.log(4096), 4)
    assert {'kl', 'teacher_entropy', 'entropy', 'effective_rank'} <= set(row['final'])
    assert saved['rows'] == json.loads(json.dumps(report['rows']))
    assert '| dino-no-centering | centre fixed at 0 |' in open(base + '.md').read()
