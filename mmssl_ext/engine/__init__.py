from .dist import MMSSLDistributedDataParallel, setup_cpu_distributed
from .hooks import KNNEvalHook

__all__ = ['KNNEvalHook', 'MMSSLDistributedDataParallel', 'setup_cpu_distributed']
