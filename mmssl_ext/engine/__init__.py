from . import atomic_checkpoint  # noqa: F401  (registers AtomicCheckpointHook, 'atomic_local')
from . import multi_optim  # noqa: F401  (registers MultiOptimWrapperConstructor)
from .dist import MMSSLDistributedDataParallel, setup_cpu_distributed
from .hooks import KNNEvalHook, PretrainedCheckHook, PretrainedKeysError
from .runner import SSLRunner, apply_runtime, build_runner

__all__ = ['KNNEvalHook', 'MMSSLDistributedDataParallel', 'PretrainedCheckHook',
           'PretrainedKeysError', 'SSLRunner', 'apply_runtime', 'build_runner',
           'setup_cpu_distributed']
