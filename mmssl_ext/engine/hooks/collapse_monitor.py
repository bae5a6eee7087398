"""``CollapseMonitorHook``: watch for representation collapse while a run trains.

Every ``interval`` iterations (and once before the first one), the model embeds a fixed probe
set (``num_samples`` training samples, drawn once in ``before_train``) in eval mode without
gradients, and the hook logs under ``collapse/``:

* ``embedding_std``: the per-dimension standard deviation (over the probe samples, divisor N) of
  the L2-normalised embedding, averaged over the ``d`` dimensions (SimSiam's measure, Chen & He
  2021): about ``1/sqrt(d)`` for embeddings spread over the sphere, 0 when every sample maps to
  the same point; ``embedding_std_ratio`` is the same times ``sqrt(d)`` (1 healthy, 0 collapsed,
  comparable across ``d``);
* ``effective_rank``: the entropy-based effective rank of Roy & Vetterli (2007) of the ``N x d``
  matrix of L2-normalised embeddings: ``exp(-sum_k p_k log p_k)`` with ``p_k = s_k / sum_j s_j``
  over its singular values ``s_k`` (uncentred, as RankMe); 1 when all rows are equal, ``d`` when
  the ``d`` singular values are equal, at most ``min(N, d)``; 0 for an all-zero matrix;
* for a model with a softmax output (``probs``): ``entropy``, the mean over samples of the
  output's entropy (nats; ``ln K`` for a uniform output, 0 for a one-hot one), and
  ``marginal_entropy``, the entropy of the mean output (low when every sample gets the same
  distribution); with a teacher (``teacher_probs``, DINO): ``teacher_entropy`` and ``kl``, the
  mean ``KL(teacher || student)``.  DINO's two collapse modes (Caron et al. 2021, Fig. 7) both
  give ``kl = 0``; the uniform one has ``teacher_entropy = ln K``, the one-dimension one 0.

**What the model is asked.**  ``model.collapse_outputs(inputs)`` (``inputs``: the data
preprocessor's output for a batch of the probe set) returns ``dict(embedding=B x d[, probs=B x
K][, teacher_probs=B x K])`` (an embedding of feature maps is average-pooled); an algorithm
with a softmax output defines it (DINO, DeepCluster, ODC, SeLa, Exemplar-CNN, the pretext
classifiers).  Without it: mmpretrain's SwAV gives its prototype scores
(``softmax(prototypes(z) / temperature)``), every other model ``neck(backbone(x))`` (or the
pooled backbone output without a neck) of the first view.  A model for which neither works gets
a warning naming the error, and the monitor switches itself off for that run: it never stops a
run by failing itself.

**Stopping.**  ``stop_below`` / ``stop_above`` map a measure to a threshold; when one holds for
``patience`` consecutive checks the hook ends the run: the train loop's ``stop_training`` flag
is set (the hooks of that iteration, checkpointing included, still run; an epoch-based loop
does not start the next iteration), and :class:`CollapseError` is raised at the end (in
``after_run``, after the loggers closed the visualizer, or before the next iteration), naming the
measure, its value, the threshold, the iterations and the last checkpoint, which is left intact.

**Neutral to the run.**  The probe set is drawn with the generators seeded by ``seed`` and the
global generators are restored afterwards; every check runs with them saved and restored too,
the model's train / eval mode is restored, and the unwrapped model is used (no DDP forward):
an exactly resumed run stays exact.  The current streak travels in the checkpoint.  Under DDP
only rank 0 computes; its measures are broadcast so that every rank logs and stops alike.

Config (the runtime base adds ``dict(type='CollapseMonitorHook')``; list it to tune it)::

    custom_hooks = [dict(type='CollapseMonitorHook', interval=100, num_samples=256,
                         stop_below=dict(effective_rank=1.5), patience=3)]
"""
import logging
import math
import random
import time
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import broadcast_object_list, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmssl_ext.evaluation.features import pool_feature
from mmssl_ext.registry import ROOT_HOOKS
from .rng_state import get_rng_state, set_rng_state

__all__ = ['CollapseError', 'CollapseMonitorHook', 'MEASURES', 'collapse_measures',
           'effective_rank', 'embedding_std', 'mean_entropy', 'mean_kl',
           'model_collapse_outputs']

CHECKPOINT_KEY = 'collapse_monitor'
#: every measure the hook can log (and stop on)
MEASURES = ('embedding_std', 'embedding_std_ratio', 'effective_rank', 'entropy',
            'marginal_entropy', 'teacher_entropy', 'kl')


class CollapseError(RuntimeError):
    """The collapse monitor's stop criterion held; the message names measure and iteration."""


# ------------------------------------------------------------------------------ measures


def embedding_std(emb: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std (divisor N) of the L2-normalised rows."""
    z = F.normalize(emb.double(), dim=1)
    return float(z.std(dim=0, unbiased=False).mean())


def effective_rank(emb: torch.Tensor, normalize: bool = True) -> float:
    """Roy & Vetterli's effective rank ``exp(H(s / ||s||_1))`` of the (row-normalised)
    matrix's singular values ``s``; 0 for an all-zero matrix."""
    x = emb.double()
    if normalize:
        x = F.normalize(x, dim=1)
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _entropy_rows(p: torch.Tensor) -> torch.Tensor:
    p = p.double()
    return -(p * p.clamp_min(1e-300).log()).sum(dim=1)


def mean_entropy(probs: torch.Tensor) -> float:
    """Mean over rows of the entropy (nats) of each row's distribution."""
    return float(_entropy_rows(probs).mean())


def mean_kl(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean over rows of ``KL(p_i || q_i)`` (nats)."""
    p, q = p.double(), q.double()
    return float((p * (p.clamp_min(1e-300).log() - q.clamp_min(1e-300).log())).sum(dim=1).mean())


def collapse_measures(embedding: torch.Tensor, probs: Optional[torch.Tensor] = None,
                      teacher_probs: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Every measure of the module docstring that the given outputs allow."""
    if embedding.ndim != 2 or len(embedding) < 2:
        raise ValueError(f'collapse measures need an N x d embedding with N >= 2, got shape '
                         f'{tuple(embedding.shape)}')
    std = embedding_std(embedding)
    out = dict(embedding_std=std, embedding_std_ratio=std * math.sqrt(embedding.shape[1]),
               effective_rank=effective_rank(embedding))
    if probs is not None:
        out['entropy'] = mean_entropy(probs)
        out['marginal_entropy'] = mean_entropy(probs.double().mean(dim=0, keepdim=True))
    if teacher_probs is not None:
        out['teacher_entropy'] = mean_entropy(teacher_probs)
        if probs is not None:
            out['kl'] = mean_kl(teacher_probs, probs)
    return out


# ------------------------------------------------------------------------------ model outputs


def _first_view(inputs):
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


def _last(feats):
    return feats[-1] if isinstance(feats, (list, tuple)) else feats


def _swav_outputs(model, inputs) -> dict:
    """mmpretrain's SwAV: the neck's (normalised) embedding and its prototype softmax."""
    loss = model.head.loss_module
    z = _last(model.neck([model.backbone(_first_view(inputs))]))
    scores = _last(loss.prototypes(z))
    return dict(embedding=z, probs=torch.softmax(scores / loss.temperature, dim=1))


def model_collapse_outputs(model, inputs) -> dict:
    """``model.collapse_outputs(inputs)`` when defined, else the defaults of the module
    docstring."""
    fn = getattr(model, 'collapse_outputs', None)
    if callable(fn):
        return fn(inputs)
    loss_module = getattr(getattr(model, 'head', None), 'loss_module', None)
    if type(model).__name__ == 'SwAV' and hasattr(loss_module, 'prototypes'):
        return _swav_outputs(model, inputs)
    feats = model.backbone(_first_view(inputs))
    if getattr(model, 'with_neck', False):
        feats = model.neck(feats)
    return dict(embedding=pool_feature(_last(feats)))


# ------------------------------------------------------------------------------ hook


def _check_thresholds(name: str, thresholds: Optional[dict]) -> Dict[str, float]:
    thresholds = dict(thresholds or {})
    bad = sorted(set(thresholds) - set(MEASURES))
    if bad:
        raise KeyError(f'CollapseMonitorHook: unknown measure(s) {bad} in {name}; the measures '
                       f'are {list(MEASURES)}')
    return {k: float(v) for k, v in thresholds.items()}


@ROOT_HOOKS.register_module()
class CollapseMonitorHook(Hook):
    """Log collapse measures of a fixed probe set; optionally stop a collapsed run.

    See the module docstring for the measures, the model protocol and the stop rule.

    Args:
        interval: check every ``interval`` training iterations (and before the first one).
        num_samples: size of the probe set (training samples evenly spaced over the data set;
            capped at its length).
        seed: seed of the generators while the probe set's pipeline runs.
        stop_below: ``{measure: threshold}``: collapse when the measure is below it.
        stop_above: ``{measure: threshold}``: collapse when the measure is above it.
        patience: consecutive checks a threshold must hold before the run stops.
    """

    # after_train_iter before RNGStateHook (85) and CheckpointHook (90): the streak saved with
    # a checkpoint includes that iteration's check
    priority = 'LOW'

    def __init__(self, interval: int = 100, num_samples: int = 256, seed: int = 0,
                 stop_below: Optional[dict] = None, stop_above: Optional[dict] = None,
                 patience: int = 3) -> None:
        for name, value, low in (('interval', interval, 1), ('num_samples', num_samples, 2),
                                 ('patience', patience, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f'CollapseMonitorHook: {name} must be an int >= {low}, '
                                 f'got {value!r}')
        self.interval = interval
        self.num_samples = num_samples
        self.seed = int(seed)
        self.stop_below = _check_thresholds('stop_below', stop_below)
        self.stop_above = _check_thresholds('stop_above', stop_above)
        self.patience = patience
        self.streak: Dict[str, int] = {}
        self.history: List[Dict[str, float]] = []  # this process's checks (step + measures)
        self.enabled = True
        self.last_seconds = 0.0
        self._probe: Optional[List[dict]] = None
        self._pending: Optional[str] = None

    # ---- probe set
    def _draw_probe(self, runner) -> List[dict]:
        """The probe samples, collated in chunks of the train batch size, drawn with seeded
        generators that are restored afterwards (the training stream is untouched)."""
        loader = runner.train_loop.dataloader
        dataset = loader.dataset
        n = min(self.num_samples, len(dataset))
        if n < 2:
            raise ValueError(f'CollapseMonitorHook: the training set has {len(dataset)} '
                             'sample(s); the measures need at least 2')
        indices = np.unique(np.linspace(0, len(dataset) - 1, n).round().astype(int))
        chunk = max(2, int(getattr(loader, 'batch_size', None) or 64))
        state = get_rng_state()
        try:
            random.seed(self.seed)
            np.random.seed(self.seed)
            torch.manual_seed(self.seed)
            samples = [dataset[int(i)] for i in indices]
        finally:
            set_rng_state(state)
        collate = loader.collate_fn
        return [collate(samples[i:i + chunk]) for i in range(0, len(samples), chunk)]

    # ---- one check
    @torch.no_grad()
    def _outputs(self, model) -> Dict[str, torch.Tensor]:
        parts: Dict[str, List[torch.Tensor]] = {}
        for batch in self._probe:
            data = model.data_preprocessor(batch, False)
            out = model_collapse_outputs(model, data['inputs'])
            if 'embedding' not in out:
                raise KeyError(f'{type(model).__name__}.collapse_outputs returned no '
                               f"'embedding' (keys: {sorted(out)})")
            out = dict(out, embedding=pool_feature(out['embedding']))  # maps -> B x C
            for key, value in out.items():
                if value is not None:
                    parts.setdefault(key, []).append(value.detach().float().flatten(1).cpu())
        return {k: torch.cat(v) for k, v in parts.items()}

    def measure(self, runner) -> Optional[Dict[str, float]]:
        """The measures of the current model (rank 0 computes, every rank returns them), or
        ``None`` once the monitor is off."""
        result: List[Optional[Dict[str, float]]] = [None]
        if is_main_process() and self.enabled:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            was_training = model.training
            state = get_rng_state()
            start = time.perf_counter()
            try:
                if self._probe is None:
                    self._probe = self._draw_probe(runner)
                model.eval()
                out = self._outputs(model)
                result[0] = collapse_measures(out['embedding'], out.get('probs'),
                                              out.get('teacher_probs'))
            except Exception as e:  # a monitor must not end a run by failing itself
                print_log(f'CollapseMonitorHook: cannot compute the collapse measures of '
                          f'{type(model).__name__} ({type(e).__name__}: {e}); the monitor is '
                          f'off for this run. Define collapse_outputs(inputs) on the algorithm '
                          f'(see mmssl_ext/engine/hooks/collapse_monitor.py) or list '
                          f"dict(type='CollapseMonitorHook', interval=...) to tune it",
                          logger='current', level=logging.WARNING)
            finally:
                model.train(was_training)
                set_rng_state(state)
            self.last_seconds = time.perf_counter() - start
        if get_world_size() > 1:
            broadcast_object_list(result, src=0)
        if result[0] is None:
            self.enabled = False
        return result[0]

    def _record(self, runner, step: int, values: Dict[str, float]) -> None:
        scalars = {f'collapse/{k}': v for k, v in values.items()}
        for key, value in scalars.items():
            runner.message_hub.update_scalar(key, value)
        runner.visualizer.add_scalars(scalars, step=step)
        runner.logger.info(f'collapse monitor (iter {step}): ' +
                           ', '.join(f'{k}: {v:.4g}' for k, v in values.items()))
        self.history.append(dict(step=step, **values))

    def _collapsed(self, values: Dict[str, float]) -> List[str]:
        """Update the streaks; the descriptions of the thresholds that held ``patience``
        times in a row."""
        hits = []
        for rules, op in ((self.stop_below, '<'), (self.stop_above, '>')):
            for key, threshold in rules.items():
                name = f'{key} {op} {threshold:g}'
                value = values.get(key)
                held = value is not None and (value < threshold if op == '<'
                                              else value > threshold)
                self.streak[name] = self.streak.get(name, 0) + 1 if held else 0
                if self.streak[name] >= self.patience:
                    hits.append(f'{key} = {value:.4g} {op} {threshold:g}')
        return hits

    def check(self, runner, step: int) -> None:
        values = self.measure(runner)
        if values is None:
            return
        self._record(runner, step, values)
        hits = self._collapsed(values)
        if not hits or self._pending:
            return
        checks = [step - i * self.interval for i in range(self.patience)][::-1]
        self._pending = (
            f'collapse at iteration {step} (1-based, as in the log): {"; ".join(hits)} at '
            f'{self.patience} consecutive checks (iterations {checks}). Training stopped after '
            f'iteration {step}')
        print_log(f'CollapseMonitorHook: {self._pending}', logger='current', level=logging.ERROR)
        runner.train_loop.stop_training = True

    def _raise_pending(self, runner) -> None:
        if self._pending is None:
            return
        last = runner.message_hub.get_info('last_ckpt')
        saved = (f'the last checkpoint, {last}, is intact' if last else
                 'no checkpoint had been written')
        msg, self._pending = self._pending, None
        raise CollapseError(
            f'{msg}; {saved}. Lower the learning rate, check the method (e.g. DINO\'s centring '
            f'and sharpening, BYOL / SimSiam\'s predictor and BatchNorm), or change the '
            f'thresholds (CollapseMonitorHook stop_below / stop_above / patience)')

    # ---- hook points
    def before_train(self, runner) -> None:
        if runner.iter == 0:
            self.check(runner, 0)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.enabled and self.every_n_train_iters(runner, self.interval):
            self.check(runner, runner.iter + 1)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._raise_pending(runner)  # an epoch-based loop stops only at the epoch's end

    def after_run(self, runner) -> None:
        self._raise_pending(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = dict(streak=dict(self.streak))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved:
            self.streak = {str(k): int(v) for k, v in saved.get('streak', {}).items()}
