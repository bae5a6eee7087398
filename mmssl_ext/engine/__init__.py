from . import atomic_checkpoint  # noqa: F401  (registers AtomicCheckpointHook, 'atomic_local')
from .dist import MMSSLDistributedDataParallel, setup_cpu_distributed
from .hooks import KNNEvalHook, PretrainedCheckHook, PretrainedKeysError

__all__ = ['KNNEvalHook', 'MMSSLDistributedDataParallel', 'PretrainedCheckHook',
           'PretrainedKeysError', 'setup_cpu_distributed']
