from .fashion_mnist import FMNIST_CLASSES, FMNIST_FOLDERS, prepare_fashion_mnist, read_idx
from . import transforms  # noqa: F401

__all__ = ['FMNIST_CLASSES', 'FMNIST_FOLDERS', 'prepare_fashion_mnist', 'read_idx']
