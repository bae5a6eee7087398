"""Safe checkpoint loading for torch >= 2.6 (``weights_only=True``) with an explicit allow-list.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only tensors, containers and
primitive types may be unpickled, plus globals registered with
``torch.serialization.add_safe_globals``.  mmengine 0.10.7 saves its ``MessageHub`` state in every
checkpoint, which holds :class:`mmengine.logging.HistoryBuffer` objects wrapping numpy arrays, so
``Runner.resume`` fails out of the box.  We do NOT switch safe loading off: we allow-list exactly
the data types mmengine and mmssl_ext write, once, when ``mmssl_ext`` is imported.  Anything else
in a checkpoint (e.g. a crafted ``__reduce__`` that would run code) is still refused by torch.

Also the one place that reads a state dict out of a checkpoint (:func:`state_dict_of`: mmengine's
``state_dict`` nesting, DDP's ``module.`` prefix), selects a prefix (:func:`strip_prefix`), picks
the backbone of a teacher-student checkpoint that its method's authors evaluate
(:func:`select_backbone`) and extracts / loads backbones; every tool and hook uses these.
"""
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


class CheckpointLoadError(RuntimeError):
    """A checkpoint could not be loaded; the message names the file and the reason."""


def _numpy_globals() -> List[Any]:
    """numpy objects that plain arrays, scalars and dtypes pickle through (numpy 1.x and 2.x)."""
    out: List[Any] = [np.ndarray, np.dtype]
    core = getattr(np, '_core', None) or np.core  # numpy 2 renamed core -> _core
    out += [core.multiarray._reconstruct, core.multiarray.scalar]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in dir(dtypes):
            cls = getattr(dtypes, name)
            # numeric / bool / string dtypes only; never the object dtype
            if isinstance(cls, type) and name.endswith('DType') and \
                    name not in ('ObjectDType', 'VoidDType'):
                out.append(cls)
    return out


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only ``getattr`` a checkpoint may call: a statistics method of HistoryBuffer.

    ``HistoryBuffer.__getstate__`` stores its ``statistics_methods`` (``min``, ``max``, ``mean``,
    ``current`` and user-registered ones), which pickle as ``getattr(HistoryBuffer, 'min')``.
    Allow-listing the real ``builtins.getattr`` would let a checkpoint fetch any attribute of any
    allowed object; this stand-in serves exactly the HistoryBuffer look-ups and refuses the rest.
    """
    if obj is HistoryBuffer and isinstance(name, str) and \
            name in HistoryBuffer._statistics_methods and \
            getattr(HistoryBuffer, name, None) is HistoryBuffer._statistics_methods[name]:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({getattr(obj, "__name__", type(obj).__name__)}, '
        f'{name!r}); only HistoryBuffer statistics methods are allowed')


def safe_globals() -> List[Any]:
    """The allow-list: every non-tensor type an mmengine / mmssl_ext checkpoint contains.

    Entries are classes/functions, or ``(stand-in, 'module.name')`` pairs that serve a pickled
    global under its name with a narrower implementation.
    """
    HistoryBuffer(max_length=1)  # registers the default statistics methods on the class
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


_REGISTERED = False


def register_safe_globals() -> None:
    """Add :func:`safe_globals` to torch's weights-only allow-list (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    torch.serialization.add_safe_globals(safe_globals())
    _REGISTERED = True


def load_checkpoint_safe(filename: Union[str, os.PathLike],
                         map_location: Optional[str] = 'cpu') -> Any:
    """``torch.load(filename, weights_only=True)`` with the allow-list and clear errors.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        CheckpointLoadError: the file is truncated / not a checkpoint, or it contains a pickled
            global outside the allow-list (e.g. code that would run on load).  The message names
            the file and the refused global.
    """
    register_safe_globals()
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointLoadError(
            f'refused to load checkpoint {filename}: it contains objects outside the '
            f'weights-only allow-list of mmssl_ext (a checkpoint should only hold tensors, '
            f'numbers, strings and containers). torch said: {e}') from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointLoadError(
            f'cannot read checkpoint {filename}: the file is truncated or not a torch '
            f'checkpoint ({type(e).__name__}: {e})') from None


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(re.match(p, key) for p in patterns)


def check_keys(own: Dict[str, torch.Tensor], loaded: Dict[str, torch.Tensor],
               allow_missing: Sequence[str] = (), allow_unexpected: Sequence[str] = (),
               check_values: bool = False, model_name: str = 'the model'
               ) -> Dict[str, List[str]]:
    """Compare a module's state dict with a file's.

    Returns lists of ``missing`` (module keys not in the file), ``unexpected`` (file keys not in
    the module), ``mismatched`` (other shape) and, with ``check_values``, ``differ`` (same key and
    shape, other values); keys covered by the allow patterns (``re.match``) are left out.
    ``mismatched`` entries read ``'key: (file shape) in the file, (shape) in <model_name>'``.
    """
    missing = [k for k in own if k not in loaded and not _matches(k, allow_missing)]
    unexpected = [k for k in loaded if k not in own and not _matches(k, allow_unexpected)]
    mismatched = [f'{k}: {tuple(loaded[k].shape)} in the file, {tuple(v.shape)} in {model_name}'
                  for k, v in own.items() if k in loaded and loaded[k].shape != v.shape]
    differ = []
    if check_values:
        differ = [k for k, v in own.items() if k in loaded and loaded[k].shape == v.shape
                  and not torch.equal(v.detach().cpu().to(loaded[k].dtype), loaded[k])]
    return dict(missing=missing, unexpected=unexpected, mismatched=mismatched, differ=differ)


# ------------------------------------------------------------------------------ state dicts
class PretrainedKeysError(KeyError):
    """Pretrained weights do not fit the module (the message names the file and the keys)."""

    def __str__(self):  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ''


def state_dict_of(ckpt: Any, source: str = '<checkpoint>') -> Dict[str, Any]:
    """The state dict of a loaded checkpoint: mmengine's ``ckpt['state_dict']`` or a bare
    state dict, with DDP's ``module.`` prefix removed.

    Raises:
        PretrainedKeysError: ``ckpt`` holds no dict (names ``source``).
    """
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise PretrainedKeysError(f'{source} holds no state dict (found a '
                                  f'{type(state).__name__})')
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                       for k, v in state.items())


def strip_prefix(state: Dict[str, Any], prefix: Optional[str]) -> 'OrderedDict[str, Any]':
    """The entries of ``state`` under ``prefix`` (``'backbone'`` or ``'backbone.'``), stripped;
    all of ``state`` for an empty prefix."""
    if not prefix:
        return OrderedDict(state)
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    return OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))


def load_state(checkpoint: str, prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint file under ``prefix`` (stripped), as mmengine selects them."""
    if '://' in checkpoint:  # torchvision://, open-mmlab://, http(s)://: mmengine's loaders
        from mmengine.runner.checkpoint import _load_checkpoint
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    else:
        ckpt = load_checkpoint_safe(checkpoint)
    state = state_dict_of(ckpt, source=checkpoint)
    return strip_prefix({k: v for k, v in state.items() if torch.is_tensor(v)}, prefix)


def extract_backbone_state(ckpt, prefix: str = 'backbone.',
                           source: str = '<checkpoint>') -> 'OrderedDict[str, torch.Tensor]':
    """Return the ``prefix``-ed entries of ``ckpt``'s state dict with the prefix removed."""
    try:
        state = state_dict_of(ckpt, source)
    except PretrainedKeysError:
        raise ValueError(f'checkpoint holds a {type(ckpt).__name__}, expected a dict') from None
    out = strip_prefix(state, prefix)
    if not out:
        heads = sorted({k.split('.', 1)[0] + '.' for k in state})
        raise KeyError(f'{source}: no weights with prefix {prefix!r}; the checkpoint has the '
                       f'prefixes {heads[:20]}. Pass --prefix to pick the right one.')
    return out


# ------------------------------------------------------------------ teacher-student checkpoints
class TwoEncoderLayout(NamedTuple):
    """Where a teacher-student method keeps its two backbones in a state dict."""
    method: str
    student_prefix: str  # the trained network's backbone
    teacher_prefix: str  # the momentum / EMA copy's backbone
    student_name: str  # what the method's authors call each network
    teacher_name: str
    evaluated: str  # 'teacher' or 'student': the backbone the method's authors evaluate


#: Checked in order; the teacher prefix identifies the method.  Which backbone the authors
#: evaluate: DINO the teacher (facebookresearch/dino eval_knn.py / eval_linear.py,
#: ``--checkpoint_key teacher``); MoCo v1/v2 the query encoder (facebookresearch/moco
#: main_lincls.py keeps ``module.encoder_q``); MoCo v3 the base encoder (facebookresearch/moco-v3
#: main_lincls.py keeps ``module.base_encoder``); BYOL the online network (Grill et al. 2020,
#: section 3: only the online encoder is kept).
TWO_ENCODER_LAYOUTS = (
    TwoEncoderLayout('DINO', 'backbone.', 'teacher.module.0.', 'student', 'EMA teacher',
                     'teacher'),
    TwoEncoderLayout('BYOL', 'backbone.', 'target_net.module.0.', 'online network',
                     'target network', 'student'),
    TwoEncoderLayout('MoCo v1/v2', 'backbone.', 'encoder_k.module.0.', 'query encoder',
                     'key (momentum) encoder', 'student'),
    TwoEncoderLayout('MoCo v3', 'backbone.', 'momentum_encoder.module.0.', 'base encoder',
                     'momentum encoder', 'student'),
    # mmselfsup 0.x kept its copies as plain nn.Sequential (no EMA wrapper)
    TwoEncoderLayout('BYOL (mmselfsup 0.x)', 'backbone.', 'target_net.0.', 'online network',
                     'target network', 'student'),
    TwoEncoderLayout('MoCo v1/v2 (mmselfsup 0.x)', 'backbone.', 'encoder_k.0.', 'query encoder',
                     'key (momentum) encoder', 'student'),
)

#: ``--weights`` of the tools: the authors' choice, or one of the two backbones
WEIGHTS_CHOICES = ('default', 'teacher', 'student')


class BackboneChoice(NamedTuple):
    """The backbone :func:`select_backbone` picked."""
    prefix: str  # key prefix in the state dict ('' for a backbone-only file)
    weights: str  # 'teacher', 'student', or 'backbone' for a checkpoint with one backbone
    description: str  # one line for the tools' output


def find_two_encoder_layout(state: Dict[str, Any]) -> Optional[TwoEncoderLayout]:
    """The teacher-student layout of ``state`` (a state dict), or None for one backbone."""
    for layout in TWO_ENCODER_LAYOUTS:
        if any(k.startswith(layout.teacher_prefix) for k in state) and \
                any(k.startswith(layout.student_prefix) for k in state):
            return layout
    return None


def select_backbone(state: Dict[str, Any], weights: str = 'default',
                    source: str = '<checkpoint>',
                    meta: Optional[dict] = None) -> BackboneChoice:
    """Which backbone of ``state`` to evaluate / extract.

    ``weights='default'``: for a teacher-student checkpoint (:data:`TWO_ENCODER_LAYOUTS`) the
    backbone its method's authors evaluate (DINO: the teacher; MoCo, BYOL: the student, i.e. the
    query / online network); otherwise the only backbone (``backbone.``, or the whole state of a
    backbone-only file).  ``'teacher'`` / ``'student'`` pick one of the two.  A backbone-only file
    written by :func:`extract_backbone` records which one it holds (``meta['weights']``).

    Raises:
        ValueError: an unknown ``weights``, or ``'teacher'`` / ``'student'`` for a checkpoint that
            does not hold that backbone (the message names the file).
    """
    if weights not in WEIGHTS_CHOICES:
        raise ValueError(f'weights must be one of {WEIGHTS_CHOICES}, got {weights!r}')
    layout = find_two_encoder_layout(state)
    if layout is not None:
        which = layout.evaluated if weights == 'default' else weights
        prefix = layout.teacher_prefix if which == 'teacher' else layout.student_prefix
        name = layout.teacher_name if which == 'teacher' else layout.student_name
        verdict = 'the weights its authors evaluate' if which == layout.evaluated else \
            'NOT the weights its authors evaluate'
        return BackboneChoice(prefix, which,
                              f"{layout.method}'s {name} ({prefix}*), {verdict}")
    recorded = (meta or {}).get('weights')
    prefix = 'backbone.' if any(k.startswith('backbone.') for k in state) else ''
    if weights != 'default' and weights != recorded:
        held = f'the {recorded} backbone' if recorded in ('teacher', 'student') else \
            'one backbone'
        raise ValueError(
            f'{source} holds {held}, not a {weights}: --weights teacher|student chooses between '
            f'the two backbones of a teacher-student checkpoint '
            f'({", ".join(sorted({lay.method for lay in TWO_ENCODER_LAYOUTS}))}); drop it')
    where = f'{prefix}*' if prefix else 'a backbone-only file'
    held = f'the {recorded} backbone, ' if recorded in ('teacher', 'student') else ''
    return BackboneChoice(prefix, recorded or 'backbone', f'{held}{where}')


def replicate_input_channels(state: 'OrderedDict[str, torch.Tensor]', in_channels: int,
                             source: str = '<checkpoint>') -> str:
    """Replicate the 1-input-channel first conv of a backbone ``state`` to ``in_channels``
    input channels, divided by ``in_channels`` (in place); return the key of that weight.

    The first conv is the first 4-D floating point tensor of ``state`` (whose key ends in
    ``weight``); an error names it when it does not have exactly 1 input channel.
    """
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
    key = next((k for k, v in state.items() if k.endswith('weight') and v.ndim == 4
                and v.is_floating_point()), None)
    if key is None:
        raise ValueError(f'{source}: the backbone has no convolution weight (4-D tensor), so '
                         f'there is no 1-channel first conv to replicate to {in_channels} '
                         'channels')
    weight = state[key]
    if weight.shape[1] != 1:
        raise ValueError(f'{source}: the first convolution weight {key!r} has {weight.shape[1]} '
                         f'input channels (shape {tuple(weight.shape)}), expected 1: only a '
                         'backbone pre-trained on 1-channel input (e.g. Colorization) needs '
                         '--in-channels')
    state[key] = weight.repeat(1, in_channels, 1, 1) / in_channels
    return key


def extract_backbone(src: str, dst: str, prefix: Optional[str] = None,
                     in_channels: Optional[int] = None, weights: str = 'default') -> dict:
    """Write the backbone of checkpoint ``src`` to ``dst``; return a summary.

    The output loads with ``init_cfg=dict(type='Pretrained', checkpoint=dst)`` into the backbone
    of any mmpretrain or mmdet config.  ``prefix``: the keys to keep; ``None`` picks them with
    :func:`select_backbone` and ``weights`` (``backbone.``, or a teacher-student method's
    evaluated backbone: DINO's teacher).  ``in_channels``: replicate a 1-input-channel first conv
    to this many input channels (:func:`replicate_input_channels`); ``None`` keeps the weights.
    """
    from mmssl_ext.version import __version__
    ckpt = load_checkpoint_safe(src)
    if prefix is None:
        choice = select_backbone(state_dict_of(ckpt, source=src), weights, source=src,
                                 meta=ckpt.get('meta') if isinstance(ckpt, dict) else None)
    elif weights != 'default':
        raise ValueError(f'give either a prefix ({prefix!r}) or weights ({weights!r}), not both')
    else:
        choice = BackboneChoice(prefix, 'backbone', f'the keys under {prefix!r} (given)')
    prefix = choice.prefix
    state = extract_backbone_state(ckpt, prefix, source=src)
    meta = dict(source=osp.abspath(src), prefix=prefix, weights=choice.weights,
                mmssl_ext_version=__version__)
    replicated = None
    if in_channels is not None:
        replicated = replicate_input_channels(state, in_channels, source=src)
        meta['replicated_input_channels'] = dict(key=replicated, in_channels=in_channels)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('meta'), dict):
        for key in ('epoch', 'iter', 'experiment_name'):
            if key in ckpt['meta']:
                meta[key] = ckpt['meta'][key]
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.partial'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, dst)  # never leave a truncated file under the final name
    return dict(num_tensors=len(state),
                num_params=int(sum(v.numel() for v in state.values())), out=dst,
                replicated=replicated, prefix=prefix, weights=choice.weights,
                description=choice.description)


def load_backbone_weights(model: torch.nn.Module, checkpoint: str,
                          weights: str = 'default') -> Dict[str, Any]:
    """Load a full or backbone-only checkpoint into ``model.backbone``.

    ``weights``: which backbone of a teacher-student checkpoint (:func:`select_backbone`; by
    default the one its method's authors evaluate: DINO's teacher, MoCo's / BYOL's student).
    Returns the ``missing`` / ``unexpected`` keys and the ``choice`` (:class:`BackboneChoice`).

    Raises:
        ValueError: the checkpoint lacks backbone weights or has other shapes (names the file
            and the keys), or lacks the backbone ``weights`` asks for.
    """
    ckpt = load_checkpoint_safe(checkpoint)
    state = state_dict_of(ckpt, source=checkpoint)
    choice = select_backbone(state, weights, source=checkpoint,
                             meta=ckpt.get('meta') if isinstance(ckpt, dict) else None)
    state = strip_prefix(state, choice.prefix)
    report = check_keys(model.backbone.state_dict(), state)
    missing, mismatched = report['missing'], report['mismatched']
    if missing or mismatched:
        raise ValueError(
            f'{checkpoint} does not fit the {type(model.backbone).__name__} backbone of the '
            f'config: {len(missing)} weights missing (e.g. {missing[:3]}), {len(mismatched)} '
            f'of another shape (e.g. {mismatched[:2]}); wrong architecture or not a backbone '
            f'checkpoint')
    result = model.backbone.load_state_dict(state, strict=False)
    return dict(missing=result.missing_keys, unexpected=result.unexpected_keys, choice=choice)
