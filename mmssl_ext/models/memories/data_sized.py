"""Modules with one buffer row per training image, whose size may be left to the training set.

A memory bank (``MemoryBank.length``, ``ODCMemory.length``) or the pseudo labels of DeepCluster,
SeLa and PCL (``num_samples``) hold one row per training image.  Left unset (``None``) in a
config, the size is filled in from the training set by ``SSLRunner`` before the model is built
(:mod:`mmssl_ext.engine.data_sizing`).  A model built elsewhere with the size unset (a kNN or
extraction tool building the model from a training config) has empty buffers that take their
size from the first checkpoint loaded into them; used unsized, it fails with
:func:`unset_size_error`.
"""
from typing import Tuple


def unset_size_error(owner: str, key: str) -> RuntimeError:
    """The error of a module used while its data-sized buffers are still unsized."""
    return RuntimeError(
        f'{owner}: {key} is unset (None), so it has no rows yet. SSLRunner sets it from the '
        f"training set (runner_type='SSLRunner', as configs/_base_/default_runtime.py declares); "
        f'a model built by hand needs {key}=len(training set), or a checkpoint loaded into it')


class DataSizedMixin:
    """Mixin of an ``nn.Module`` whose buffers ``SIZED_BUFFERS`` have one row per training image,
    ``N`` given by the constructor argument ``SIZE_ARG`` (stored under the same attribute name).

    With ``N`` unset (``None``) the subclass registers the buffers empty; loading a state dict that
    holds them calls :meth:`allocate_rows` with the checkpoint's row count first, so an unsized
    module adopts the checkpoint's size.  Subclasses implement :meth:`allocate_rows`.
    """

    SIZE_ARG: str = 'length'
    SIZED_BUFFERS: Tuple[str, ...] = ()
    SIZED_DIM: int = 0  # the buffers' dimension with one entry per training image

    @property
    def data_size(self):
        """``N``, or ``None`` while unsized."""
        return getattr(self, self.SIZE_ARG)

    def allocate_rows(self, n: int, fill: bool = True) -> None:
        """Set ``N = n`` and (re-)register the sized buffers; ``fill=False``: leave them
        uninitialised (a state dict is about to be copied into them)."""
        raise NotImplementedError

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        if self.data_size is None and self.SIZED_BUFFERS:
            saved = state_dict.get(prefix + self.SIZED_BUFFERS[0], None)
            if saved is not None:
                self.allocate_rows(int(saved.shape[self.SIZED_DIM]), fill=False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
