"""Check that every image a dataset lists exists, before a long run finds out.

Checking at dataset build time would cost every run a pass over the whole file list (1.28M
files for ImageNet), so the datasets do not do it; ``LoadImageFromFileChecked`` names a missing
file when it is reached, and this module checks the whole list on demand:

* :func:`check_files`: which of a list of paths do not exist.  One directory listing
  (``os.scandir``) per directory instead of one ``stat`` per file, so ImageNet's 1.28M files in
  1000 folders take seconds, also on network file systems;
* :func:`check_annotation`: the files of an mmpretrain annotation file (``path [label]`` per
  line) under ``data_prefix``;
* :func:`check_dataset`: the ``img_path`` of every sample of a built dataset (any format mmengine
  reads, wrappers included);
* ``tools/check_data.py CONFIG``: builds the config's training (or val / test) dataset and
  checks it, naming the missing files (first few + count); exit status 1 when any is missing.
"""
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set


@dataclass
class FileCheck:
    """The result of a check: how many paths were checked, which are missing, and which could
    not be checked (remote URIs such as ``s3://``)."""
    source: str
    total: int = 0
    missing: List[str] = field(default_factory=list)
    unchecked: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing

    def summary(self, max_listed: int = 10) -> str:
        if self.ok:
            text = f'{self.source}: all {self.total} files exist'
        else:
            listed = '\n  '.join(self.missing[:max_listed])
            more = (f'\n  ... and {len(self.missing) - max_listed} more'
                    if len(self.missing) > max_listed else '')
            text = (f'{self.source}: {len(self.missing)} of {self.total} files are missing:\n'
                    f'  {listed}{more}')
        if self.unchecked:
            text += f'\n({self.unchecked} remote paths not checked)'
        return text


def check_files(paths: Iterable[str], source: str = 'files') -> FileCheck:
    """Which of ``paths`` are not existing files (in the order given)."""
    paths = list(paths)
    result = FileCheck(source=source, total=len(paths))
    listings: Dict[str, Optional[Set[str]]] = {}
    for path in paths:
        path = os.fspath(path)
        if '://' in path:
            result.unchecked += 1
            continue
        folder, name = osp.split(osp.abspath(path))
        if folder not in listings:
            try:
                with os.scandir(folder) as it:
                    listings[folder] = {e.name for e in it if e.is_file()}
            except OSError:  # the folder itself is missing (or unreadable)
                listings[folder] = None
        names = listings[folder]
        if names is None or name not in names:
            result.missing.append(path)
    return result


def read_annotation(ann_file: str) -> List[str]:
    """The file names of an mmpretrain annotation file: one ``path`` or ``path label`` a line
    (a path may contain spaces when a label follows it); blank lines are skipped."""
    names = []
    with open(ann_file) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            head, _, tail = line.rpartition(' ')
            names.append(head if head and tail.lstrip('-').isdigit() else line)
    return names


def check_annotation(ann_file: str, data_prefix: str = '') -> FileCheck:
    """The files listed in ``ann_file`` (mmpretrain's ``path [label]`` text format) that do not
    exist under ``data_prefix``.

    Example::

        >>> res = check_annotation('data/imagenet/meta/train.txt', 'data/imagenet/train')
        >>> print(res.summary())   # 'data/imagenet/meta/train.txt: 3 of 1281167 files are ...'
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation file not found: {ann_file}')
    paths = [osp.join(data_prefix, name) for name in read_annotation(ann_file)]
    return check_files(paths, source=ann_file)


def _dataset_source(dataset) -> str:
    inner = dataset
    while getattr(inner, 'dataset', None) is not None:
        inner = inner.dataset
    ann = getattr(inner, 'ann_file', '')
    return f'{type(dataset).__name__}' + (f' ({ann})' if ann else '')


def check_dataset(dataset, key: str = 'img_path') -> FileCheck:
    """The ``key`` paths of every sample of a built (mmengine) dataset that do not exist."""
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    paths = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if info.get(key):
            paths.append(info[key])
    return check_files(paths, source=_dataset_source(dataset))


def build_dataset_from_config(config: str, split: str = 'train',
                              cfg_options: Optional[dict] = None):
    """Build ``{split}_dataloader.dataset`` of a config (default scope applied)."""
    from mmengine.registry import DefaultScope

    import mmssl_ext  # noqa: F401  registers our types
    from mmssl_ext.registry import DATASETS
    from mmssl_ext.utils.config import load_config
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    loader = cfg.get(f'{split}_dataloader', None)
    if not loader or 'dataset' not in loader:
        raise KeyError(f'{config} has no {split}_dataloader.dataset')
    scope = cfg.get('default_scope', 'mmpretrain')
    with DefaultScope.overwrite_default_scope(scope):
        return DATASETS.build(loader['dataset'])


def __getattr__(name):  # deprecated aliases of the entry points that moved to the CLI layer
    if name in ('main', 'cli'):
        import warnings

        from mmssl_ext.cli import check_data as _cli
        warnings.warn(f'{__name__}.{name} moved to mmssl_ext.cli.check_data.{name}',
                      DeprecationWarning, stacklevel=2)
        return getattr(_cli, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
