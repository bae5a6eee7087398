from .knn_hook import KNNEvalHook
from .pretrained_check import PretrainedCheckHook, PretrainedKeysError

__all__ = ['KNNEvalHook', 'PretrainedCheckHook', 'PretrainedKeysError']
