from .collapse_monitor import CollapseError, CollapseMonitorHook  # noqa: F401
from .knn_hook import KNNEvalHook
from .la_hook import LocalAggregationHook  # noqa: F401
from .deepcluster_hook import DeepClusterHook  # noqa: F401
from .exemplar_check import ExemplarClassesCheckHook  # noqa: F401
from .gan_samples import GANSamplesHook  # noqa: F401
from .memory_bank_check import MemoryBankSizeCheckHook
from .odc_hook import ODCHook  # noqa: F401
from .online_linear_probe import OnlineLinearProbeHook  # noqa: F401
from .pcl_hook import PCLHook  # noqa: F401
from .nan_check import NaNLossCheckHook, NonFiniteLossError
from .pretrained_check import PretrainedCheckHook, PretrainedKeysError
from .rank_state import PerRankStateHook
from .rng_state import RNGStateHook, add_exact_resume_hooks
from .sela_hook import SeLaHook  # noqa: F401
from .swav_queue import ResumableSwAVHook

__all__ = ['KNNEvalHook', 'MemoryBankSizeCheckHook', 'NaNLossCheckHook', 'NonFiniteLossError',
           'PerRankStateHook', 'PretrainedCheckHook', 'PretrainedKeysError', 'RNGStateHook',
           'ResumableSwAVHook', 'add_exact_resume_hooks']
