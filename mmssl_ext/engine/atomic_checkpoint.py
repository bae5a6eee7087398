"""Atomic checkpoint files: an interrupted write never replaces the last good checkpoint.

mmengine 0.10.7 writes checkpoints *in place*: ``mmengine.runner.checkpoint.save_checkpoint``
pickles the checkpoint into an ``io.BytesIO`` and hands the bytes to
``LocalBackend.put``, which does ``open(filepath, 'wb').write(obj)`` (no temporary file, no
``fsync``); ``CheckpointHook`` then writes ``work_dir/last_checkpoint`` with
``open(save_file, 'w')``.  A process killed during the write (OOM killer, pre-emption, the disk
filling up, a power cut before the page cache is flushed) leaves a truncated ``iter_N.pth``, and an
empty ``last_checkpoint`` makes ``--resume`` fail.  Worse, with ``max_keep_ckpts`` the hook deletes
the oldest checkpoint *before* writing the new one, so with ``max_keep_ckpts=1`` (several of our
benchmark configs) an interrupted write leaves no loadable checkpoint at all.

Two pieces fix this without touching mmengine:

* :class:`AtomicLocalBackend` (mmengine file backend ``'atomic_local'``): ``put`` / ``put_text``
  write to a temporary file in the same directory (``.{name}.{random}.partial``), flush and
  ``fsync`` it, ``os.replace`` it over the target and ``fsync`` the directory
  (:func:`atomic_write`).  Readers see the old file or the complete new one, never a partial one.
* :class:`AtomicCheckpointHook`, a drop-in ``CheckpointHook`` (same arguments, same files, same
  ``keep_ckpt_ids`` / ``last_ckpt`` bookkeeping in the message hub) that writes through that
  backend by default, writes ``last_checkpoint`` atomically *after* the checkpoint it names is on
  disk, and removes outdated checkpoints (``max_keep_ckpts``, the previous ``best_*.pth``) only
  after the new checkpoint and ``last_checkpoint`` are written.  Leftover ``*.partial`` files of a
  killed run are removed in ``before_train``.

``tools/train.py`` applies it to every run through :func:`use_atomic_checkpoints` (the
``default_hooks.checkpoint`` entry becomes ``AtomicCheckpointHook``); in a config::

    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1000))

A checkpoint hook with its own storage (``backend_args`` / ``file_client_args``, or an
``out_dir`` with a URI prefix such as ``s3://``) is left to mmengine: object stores replace whole
objects anyway, and our backend is for local file systems only.
"""
import contextlib
import copy
import os
import os.path as osp
from typing import Any, Iterator, List, Optional, Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from mmssl_ext.registry import ROOT_HOOKS
from mmssl_ext.utils.config import type_name
from mmssl_ext.utils.fileio import PARTIAL_SUFFIX, atomic_write, remove_partial_files

__all__ = ['ATOMIC_BACKEND', 'PARTIAL_SUFFIX', 'AtomicCheckpointHook', 'AtomicLocalBackend',
           'atomic_write', 'remove_partial_files', 'use_atomic_checkpoints']

#: name of the file backend, for ``backend_args=dict(backend=ATOMIC_BACKEND)``
ATOMIC_BACKEND = 'atomic_local'


@register_backend(ATOMIC_BACKEND, force=True)
class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put`` / ``put_text`` write atomically
    (:func:`atomic_write`).  Select it with ``backend_args=dict(backend='atomic_local')``."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        atomic_write(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))


class _DeferRemovals:
    """Stands in for ``CheckpointHook.file_backend`` while a checkpoint is written: ``remove`` /
    ``rmtree`` are recorded instead of done; everything else goes to the real backend."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.pending: List[str] = []

    def remove(self, filepath) -> None:
        self.pending.append(filepath)

    def rmtree(self, dir_path) -> None:
        self.pending.append(dir_path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def _has_uri_prefix(path: Any) -> bool:
    return isinstance(path, str) and '://' in path


@ROOT_HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose files are written atomically and whose clean-up comes last.

    Same arguments and files as mmengine's ``CheckpointHook``.  Differences (see the module
    docstring):

    * checkpoints go through :class:`AtomicLocalBackend` (``backend_args`` defaults to
      ``dict(backend='atomic_local')`` when neither ``backend_args`` nor ``file_client_args`` is
      given and ``out_dir`` is a local path);
    * ``work_dir/last_checkpoint`` is written atomically, after its checkpoint;
    * outdated checkpoints (``max_keep_ckpts``) and the previous best checkpoint are removed only
      once the new checkpoint and ``last_checkpoint`` are on disk: an interrupted write leaves the
      previous checkpoints and ``last_checkpoint`` as they were, and a failed save (an exception)
      puts the hook's bookkeeping back (``keep_ckpt_ids``, ``last_ckpt``, best score and path, in
      the hook and in the message hub).  (If the process dies between the write and the removal,
      the outdated file stays behind, outside ``keep_ckpt_ids``.)
    * ``before_train`` removes ``*.partial`` files left by a process killed mid-write.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.backend_args is None and self.file_client_args is None and \
                not _has_uri_prefix(None if self.out_dir is None else os.fspath(self.out_dir)):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        self._defer_depth = 0
        self._deferred: Optional[_DeferRemovals] = None
        self._saved_bookkeeping: Optional[dict] = None

    @property
    def atomic(self) -> bool:
        """Whether checkpoints are written through :class:`AtomicLocalBackend`."""
        return isinstance(self.backend_args, dict) and \
            self.backend_args.get('backend') == ATOMIC_BACKEND

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.atomic and is_main_process():
            for d in {osp.abspath(self.out_dir), osp.abspath(runner.work_dir)}:
                if osp.isdir(d):
                    for path in remove_partial_files(d):
                        runner.logger.info(f'Removed {path}, an unfinished checkpoint write '
                                           f'of an interrupted run.')

    #: message-hub entries CheckpointHook keeps (the ``best_*`` ones per metric, with a suffix)
    _HUB_KEYS = ('keep_ckpt_ids', 'last_ckpt')
    _HUB_PREFIXES = ('best_score', 'best_ckpt')

    def _bookkeeping(self, runner) -> dict:
        hub = {k: copy.deepcopy(v) for k, v in runner.message_hub.runtime_info.items()
               if k in self._HUB_KEYS or k.startswith(self._HUB_PREFIXES)}
        return dict(hub=hub,
                    keep_ckpt_ids=copy.copy(getattr(self, 'keep_ckpt_ids', None)),
                    last_ckpt=self.last_ckpt,
                    best_ckpt_path=getattr(self, 'best_ckpt_path', None),
                    best_ckpt_path_dict=dict(getattr(self, 'best_ckpt_path_dict', None) or {}))

    def _restore_bookkeeping(self, runner, saved: dict) -> None:
        info = runner.message_hub.runtime_info
        for key in [k for k in info if k in self._HUB_KEYS or k.startswith(self._HUB_PREFIXES)]:
            if key not in saved['hub']:
                del info[key]
        for key, value in saved['hub'].items():
            runner.message_hub.update_info(key, value)
        if saved['keep_ckpt_ids'] is not None:
            self.keep_ckpt_ids = saved['keep_ckpt_ids']
        self.last_ckpt = saved['last_ckpt']
        if hasattr(self, 'best_ckpt_path'):
            self.best_ckpt_path = saved['best_ckpt_path']
        if hasattr(self, 'best_ckpt_path_dict'):
            self.best_ckpt_path_dict = saved['best_ckpt_path_dict']

    @contextlib.contextmanager
    def _save_transaction(self, runner) -> Iterator[None]:
        """Record the backend's ``remove`` / ``rmtree`` calls and do them when the outermost block
        ends without an error.  On an error nothing is removed and the hook's bookkeeping (its
        ``keep_ckpt_ids`` / ``last_ckpt`` / best-checkpoint entries, here and in the message
        hub) is put back, so a later save in the same process starts from the files on disk."""
        if self._defer_depth == 0:
            self._deferred = _DeferRemovals(self.file_backend)
            self.file_backend = self._deferred
            self._saved_bookkeeping = self._bookkeeping(runner)
        self._defer_depth += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            self._defer_depth -= 1
            if self._defer_depth == 0:
                deferred, self._deferred = self._deferred, None
                saved, self._saved_bookkeeping = self._saved_bookkeeping, None
                self.file_backend = deferred._backend
                if ok:
                    self._remove_now(deferred.pending)
                else:
                    self._restore_bookkeeping(runner, saved)

    def _protected_paths(self) -> set:
        """Files the hook currently points at; never removed."""
        paths = {self.last_ckpt, getattr(self, 'best_ckpt_path', None)}
        paths.update((getattr(self, 'best_ckpt_path_dict', None) or {}).values())
        return {p for p in paths if p}

    def _remove_now(self, paths: List[str]) -> None:
        protected = self._protected_paths()
        for path in paths:
            if path in protected:
                continue
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._save_transaction(runner):
            super()._save_best_checkpoint(runner, metrics)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine 0.10.7's CheckpointHook._save_checkpoint_with_step, with the removal of the
        # outdated checkpoint deferred and ``last_checkpoint`` written atomically
        with self._save_transaction(runner):
            if self.max_keep_ckpts > 0:
                # _save_checkpoint and _save_best_checkpoint may both save at this step
                if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
                    if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                        _step = self.keep_ckpt_ids.popleft()
                        if is_main_process():
                            self.file_backend.remove(self.file_backend.join_path(
                                self.out_dir, self.filename_tmpl.format(_step)))
                    self.keep_ckpt_ids.append(step)
                    runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

            ckpt_filename = self.filename_tmpl.format(step)
            self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
            runner.message_hub.update_info('last_ckpt', self.last_ckpt)

            runner.save_checkpoint(
                self.out_dir,
                ckpt_filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)

            if not is_main_process():
                return
            save_file = osp.join(runner.work_dir, 'last_checkpoint')
            if self.atomic:
                atomic_write(save_file, str(self.last_ckpt).encode('utf-8'))
            else:
                with open(save_file, 'w') as f:
                    f.write(self.last_ckpt)  # type: ignore


def use_atomic_checkpoints(cfg):
    """Make ``cfg``'s checkpoint hook an :class:`AtomicCheckpointHook` (all its arguments kept).

    Applied to every run by the runtime base (``ssl_runtime.atomic_checkpoints``).  Changes
    ``cfg.default_hooks.checkpoint`` when it is mmengine's ``CheckpointHook`` (by name, any scope
    prefix, or the class) writing to the local file system: no ``backend_args`` /
    ``file_client_args`` and no URI ``out_dir``.  A config without a checkpoint hook
    (``checkpoint=None``), with another hook type, or with its own storage is left as it is.
    Idempotent; returns ``cfg``.
    """
    hooks = cfg.get('default_hooks', None)
    if not hooks:
        return cfg
    ckpt = hooks.get('checkpoint', None)
    if not isinstance(ckpt, dict):
        return cfg
    htype = ckpt.get('type', None)
    if htype is not CheckpointHook and not (isinstance(htype, str)
                                            and type_name(htype) == 'CheckpointHook'):
        return cfg
    if ckpt.get('backend_args', None) is not None or \
            ckpt.get('file_client_args', None) is not None or \
            _has_uri_prefix(ckpt.get('out_dir', None)):
        return cfg
    ckpt['type'] = 'AtomicCheckpointHook'
    return cfg
