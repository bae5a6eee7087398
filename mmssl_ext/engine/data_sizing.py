"""Sizes that follow from the training set: memory-bank lengths, DeepCluster's pseudo labels.

A model component whose constructor takes one of :data:`DATASET_SIZE_KEYS` (``MemoryBank`` /
``ODCMemory`` ``length``, ``DeepCluster`` ``num_samples``) holds one row per training image.  When
the config leaves that key unset (``None`` or absent), :func:`size_from_training_set` builds the
training set once, counts it and fills the key in, before the model is built and wrapped in DDP
(every rank counts the whole training set, not its shard).  NCE's ``num_data`` follows the bank
length (PIRL, NPID, CMC pass it on).  :func:`check_resume` refuses a resume whose training set
no longer matches the checkpoint's rows.
"""
import copy
import inspect
from typing import Any, Dict, List, Optional, Tuple

from mmengine.registry import DATASETS, DefaultScope

from mmssl_ext.models.memories.data_sized import DataSizedMixin
from mmssl_ext.registry import MODELS

#: constructor arguments that hold the number of training images (memory banks, DeepCluster's
#: labels); ``benchmarks/quality.py`` resizes the same keys
DATASET_SIZE_KEYS = ('length', 'num_samples')
#: checkpoint ``meta`` key of the number of training samples a data-sized model was trained on
META_KEY = 'train_set_size'


def num_sample_indices(dataset) -> int:
    """The number of distinct ``sample_idx`` values ``dataset`` hands out.

    ``len(dataset)`` for a plain dataset (mmengine's ``BaseDataset`` numbers the samples
    ``0 .. len - 1``, after ``indices`` / filtering); wrappers that repeat or resample a dataset
    (``RepeatDataset``, ``ClassBalancedDataset``) hand out the indices of the wrapped one; a
    ``ConcatDataset`` those of its largest part.
    """
    inner = getattr(dataset, 'dataset', None)
    if inner is not None and type(dataset).__name__ in ('RepeatDataset', 'ClassBalancedDataset'):
        return num_sample_indices(inner)
    parts = getattr(dataset, 'datasets', None)
    if parts is not None and type(dataset).__name__ == 'ConcatDataset':
        return max(num_sample_indices(d) for d in parts)
    return len(dataset)


def _size_args(type_) -> Dict[str, Any]:
    """``{key: default}`` of the :data:`DATASET_SIZE_KEYS` the class ``type_`` names takes."""
    try:
        cls = type_ if isinstance(type_, type) else MODELS.get(type_)
        params = inspect.signature(cls).parameters if cls is not None else {}
    except (KeyError, TypeError, ValueError):  # not a registered class: nothing to size
        return {}
    return {k: params[k].default for k in DATASET_SIZE_KEYS if k in params}


def unset_size_keys(model_cfg: Any, path: str = 'model') -> List[Tuple[str, dict, str]]:
    """``(config path, dict, key)`` of every data-size key left unset in ``model_cfg``: set to
    ``None``, or absent where the class has no default (or ``None``).  Types resolve in the
    current default scope."""
    found = []
    if isinstance(model_cfg, dict):
        if 'type' in model_cfg:
            for key, default in _size_args(model_cfg['type']).items():
                value = model_cfg.get(key, default)
                if value is None or value is inspect.Parameter.empty:
                    found.append((f'{path}.{key}', model_cfg, key))
        for k, v in model_cfg.items():
            found += unset_size_keys(v, f'{path}.{k}')
    elif isinstance(model_cfg, (list, tuple)):
        for i, v in enumerate(model_cfg):
            found += unset_size_keys(v, f'{path}.{i}')
    return found


def size_from_training_set(model: Any, train_dataloader: Any, default_scope: Optional[str]
                           ) -> Tuple[Any, Any, Optional[int], List[str]]:
    """Fill the unset data-size keys of ``model`` with the training set's size.

    Returns ``(model, train_dataloader, n, keys)``: copies of both configs, the model's keys set
    to ``n`` and the loader's ``dataset`` replaced by the dataset built to count it (mmengine's
    ``Runner.build_dataloader`` takes an instance, so the data is not scanned twice).  The inputs
    come back unchanged, with ``n = None``, when nothing is unset or there is no training set
    config (a test-only run: the checkpoint then sizes the model).
    """
    with DefaultScope.overwrite_default_scope(default_scope):
        unset = unset_size_keys(model)
    dataset = train_dataloader.get('dataset', None) if isinstance(
        train_dataloader, dict) else None
    if not unset or dataset is None:
        return model, train_dataloader, None, []
    if isinstance(dataset, dict):
        with DefaultScope.overwrite_default_scope(default_scope):
            dataset = DATASETS.build(copy.deepcopy(dataset))
    n = num_sample_indices(dataset)
    model = copy.deepcopy(model)
    with DefaultScope.overwrite_default_scope(default_scope):
        unset = unset_size_keys(model)  # the same keys, in the copy
    for _, node, key in unset:
        node[key] = n
    loader = dict(train_dataloader)
    loader['dataset'] = dataset
    return model, loader, n, [p for p, _, _ in unset]


def data_sized_modules(model) -> List[Tuple[str, DataSizedMixin]]:
    """``(module name, module)`` of every module with one buffer row per training image."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, DataSizedMixin)]


def size_key(name: str, module: DataSizedMixin) -> str:
    """The config key of a data-sized module's size, e.g. ``model.memory_bank.length``."""
    return '.'.join(['model'] + ([name] if name else []) + [module.SIZE_ARG])


def check_resume(model, checkpoint: dict, n: int, filename: str) -> None:
    """Refuse to resume from ``checkpoint`` when its data-sized rows do not fit the model or the
    training set (``n`` samples) changed since: the rows are indexed by the dataset index, so a
    grown or shrunk set would silently pair images with other images' entries.

    Raises:
        ValueError: naming the checkpoint, both sizes and the ways out.
    """
    state = checkpoint.get('state_dict', checkpoint)
    trained_on = (checkpoint.get('meta', None) or {}).get(META_KEY, None)
    for name, module in data_sized_modules(model):
        buf = (name + '.' if name else '') + module.SIZED_BUFFERS[0]
        saved = state.get(buf, state.get('module.' + buf, None))
        if saved is None:
            continue
        rows, key = int(saved.shape[module.SIZED_DIM]), size_key(name, module)
        size = module.data_size
        if trained_on is not None:
            was, data_changed = trained_on, trained_on != n
        else:  # a checkpoint without the record: its rows are the size it was trained with
            was, data_changed = rows, rows != size and size == n
        if data_changed:
            raise ValueError(
                f'checkpoint {filename} was trained on {was} images ({key} = {rows}); the '
                f'training set (train_dataloader.dataset) now has {n}: the rows are indexed by '
                f"the dataset index, so resuming would pair images with other images' entries. "
                f'Restore the file list / pass the original ann_file '
                f'(train_dataloader.dataset.ann_file), or start a new run without --resume')
        if rows != size:
            raise ValueError(
                f'checkpoint {filename} holds {rows} rows for {key} but the config now sets '
                f'{key}={size}; resume with the size it was trained with '
                f'(--cfg-options {key}={rows}, or leave it unset to take the training set size)')
