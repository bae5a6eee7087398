"""Safe checkpoint loading for torch >= 2.6 (``weights_only=True``) with an explicit allow-list.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only tensors, containers and
primitive types may be unpickled, plus globals registered with
``torch.serialization.add_safe_globals``.  mmengine 0.10.7 saves its ``MessageHub`` state in every
checkpoint, which holds :class:`mmengine.logging.HistoryBuffer` objects wrapping numpy arrays, so
``Runner.resume`` fails out of the box.  We do NOT switch safe loading off: we allow-list exactly the
data types mmengine and mmssl_ext write, once, when ``mmssl_ext`` is imported.  Anything else in a
checkpoint (e.g. a crafted ``__reduce__`` that would run code) is still refused by torch.
"""
import os
import pickle
import re
from typing import Any, Dict, List, Optional, Sequence, Union

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
