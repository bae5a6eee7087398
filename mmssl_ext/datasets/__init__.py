from .fashion_mnist import FMNIST_CLASSES, FMNIST_FOLDERS, prepare_fashion_mnist, read_idx
from .fmnist_detection import FMNIST_DET_METAINFO, prepare_fmnist_detection
from .samplers import ClusterUniformSampler  # noqa: F401
from .soft_label import SoftLabelDataset, check_soft_targets
from .subset import balanced_subset, write_subsets
from . import transforms  # noqa: F401

__all__ = ['FMNIST_CLASSES', 'FMNIST_DET_METAINFO', 'FMNIST_FOLDERS', 'SoftLabelDataset',
           'balanced_subset', 'check_soft_targets', 'prepare_fashion_mnist',
           'prepare_fmnist_detection', 'read_idx', 'write_subsets']
