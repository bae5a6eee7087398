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
from typing import Any, List, Optional, Union

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
