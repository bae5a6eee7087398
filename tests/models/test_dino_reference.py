"""DINO against its official implementation: the loss equals a transcription of
facebookresearch/dino's ``DINOLoss`` (main_dino.py) and, where lightly is installed
(benchmarks/requirements.txt), ``lightly.loss.DINOLoss``; the teacher-temperature warm-up is per
epoch as the official ``teacher_temp_schedule``, per step as an option."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from mmssl_ext.models.losses import MMSSLDINOLoss
from tests.models.test_dino import K, _build, _views


class OfficialDINOLoss(torch.nn.Module):
    """facebookresearch/dino main_dino.py ``DINOLoss`` (single process: the all-reduce of the
    centre is the identity), transcribed: per-crop chunks, the teacher schedule indexed by
    epoch, ``v == iq`` pairs skipped, the centre updated after the loss."""

    def __init__(self, out_dim, ncrops, warmup_teacher_temp, teacher_temp,
                 warmup_teacher_temp_epochs, nepochs, student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.ncrops = ncrops
        self.register_buffer('center', torch.zeros(1, out_dim))
        self.teacher_temp_schedule = np.concatenate((
            np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
            np.ones(nepochs - warmup_teacher_temp_epochs) * teacher_temp))

    def forward(self, student_output, teacher_output, epoch):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        temp = self.teacher_temp_schedule[epoch]
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1)
        teacher_out = teacher_out.detach().chunk(2)
        total_loss, n_loss_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + \
            batch_center * (1 - self.center_momentum)
        return total_loss


def _outputs(epochs, ncrops, batch, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(ncrops * batch, dim, generator=g),
             torch.randn(2 * batch, dim, generator=g) * 3)
            for _ in range(epochs)]


@pytest.mark.parametrize('ncrops,warmup_epochs', [(2, 0), (10, 3), (4, 1)])
def test_loss_equals_the_official_per_epoch_schedule(ncrops, warmup_epochs):
    """Several epochs: temperatures from the official schedule, centre carried over."""
    epochs, batch, dim = 6, 3, 16
    ours = MMSSLDINOLoss(out_channels=dim, teacher_temp=0.07, warmup_teacher_temp=0.04,
                         warmup_epochs=warmup_epochs)
    official = OfficialDINOLoss(dim, ncrops, 0.04, 0.07, warmup_epochs, epochs)
    for epoch, (student, teacher) in enumerate(_outputs(epochs, ncrops, batch, dim)):
        got = ours(student, teacher, step=100 * epoch, epoch=epoch)
        want = official(student, teacher, epoch)
        assert float(got) == pytest.approx(float(want), rel=1e-5), epoch
        assert ours.teacher_temperature(100 * epoch, epoch) == \
            pytest.approx(official.teacher_temp_schedule[epoch], rel=1e-12)
        torch.testing.assert_close(ours.center, official.center.float(), rtol=1e-5, atol=1e-6)


def test_loss_equals_lightly():
    lightly_loss = pytest.importorskip('lightly.loss')
    epochs, ncrops, batch, dim, warmup = 5, 6, 4, 32, 3
    ours = MMSSLDINOLoss(out_channels=dim, teacher_temp=0.07, warmup_teacher_temp=0.04,
                         warmup_epochs=warmup)
    theirs = lightly_loss.DINOLoss(output_dim=dim, warmup_teacher_temp=0.04, teacher_temp=0.07,
                                   warmup_teacher_temp_epochs=warmup)
    for epoch, (student, teacher) in enumerate(_outputs(epochs, ncrops, batch, dim, seed=1)):
        got = ours(student, teacher, epoch=epoch)
        want = theirs(list(teacher.chunk(2)), list(student.chunk(ncrops)), epoch=epoch)
        assert float(got) == pytest.approx(float(want), rel=1e-6), epoch
        torch.testing.assert_close(ours.center.view(-1), theirs.center.view(-1))


def test_per_epoch_and_per_step_warmup():
    per_epoch = MMSSLDINOLoss(out_channels=3, teacher_temp=0.07, warmup_teacher_temp=0.04,
                              warmup_epochs=5)
    got = [per_epoch.teacher_temperature(step=1000 * e, epoch=e) for e in range(8)]
    np.testing.assert_allclose(got, list(np.linspace(0.04, 0.07, 5)) + [0.07] * 3, atol=1e-12)
    # the step does not matter in the per-epoch schedule; the epoch is required
    assert per_epoch.teacher_temperature(step=0, epoch=2) == pytest.approx(0.055)
    with pytest.raises(ValueError, match='needs the epoch'):
        per_epoch.teacher_temperature(step=3)
    per_step = MMSSLDINOLoss(out_channels=3, teacher_temp=0.07, warmup_iters=5)
    assert per_step.teacher_temperature(step=2, epoch=0) == pytest.approx(0.055)
    with pytest.raises(ValueError, match='not both'):
        MMSSLDINOLoss(out_channels=3, warmup_iters=5, warmup_epochs=2)
    with pytest.raises(ValueError, match='must be >= 0'):
        MMSSLDINOLoss(out_channels=3, warmup_epochs=-1)


@pytest.fixture
def run_length():
    hub = MessageHub.get_current_instance()
    old = {k: hub.get_info(k) for k in ('max_iters', 'max_epochs')}
    yield hub
    for k, v in old.items():
        if v is None:
            hub.runtime_info.pop(k, None)
        else:
            hub.update_info(k, v)


@pytest.mark.parametrize('source', ['config', 'runner'])
def test_model_warms_up_per_epoch_of_optimizer_steps(source, run_length):
    """2 optimizer steps per epoch, warm-up over 3 epochs: tau_t 0.04, 0.055, 0.07 for steps
    (0, 1), (2, 3), (4, 5); the epoch length from the config or from the run (max_iters /
    max_epochs, as the Runner records them)."""
    run_length.update_info('max_iters', 6)
    run_length.update_info('max_epochs', 3)
    loss = dict(type='MMSSLDINOLoss', out_channels=K, teacher_temp=0.07, warmup_epochs=3)
    extra = dict(iters_per_epoch=2) if source == 'config' else {}
    if source == 'config':
        run_length.update_info('max_epochs', 1)  # ignored: the config gives the length
    model = _build('vit', loss=loss, **extra)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    temps = []
    for seed in range(6):
        out = model.loss(_views(seed=seed), None)
        temps.append(float(out['teacher_temp']))
        wrapper.update_params(out['loss'])
    np.testing.assert_allclose(temps, [0.04, 0.04, 0.055, 0.055, 0.07, 0.07], atol=1e-7)


def test_iteration_based_run_needs_the_epoch_length(run_length):
    run_length.update_info('max_iters', 6)
    run_length.update_info('max_epochs', 1)  # IterBasedTrainLoop's value
    model = _build('vit', loss=dict(type='MMSSLDINOLoss', out_channels=K, warmup_epochs=3))
    with pytest.raises(RuntimeError, match='per step with loss.warmup_iters'):
        model.loss(_views(), None)
    with pytest.raises(ValueError, match='iters_per_epoch must be >= 1'):
        _build('vit', iters_per_epoch=0)
