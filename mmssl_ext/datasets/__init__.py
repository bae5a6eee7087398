from .fashion_mnist import FMNIST_CLASSES, FMNIST_FOLDERS, prepare_fashion_mnist, read_idx
from .soft_label import SoftLabelDataset, check_soft_targets
from . import transforms  # noqa: F401

__all__ = ['FMNIST_CLASSES', 'FMNIST_FOLDERS', 'SoftLabelDataset', 'check_soft_targets',
           'prepare_fashion_mnist', 'read_idx']
