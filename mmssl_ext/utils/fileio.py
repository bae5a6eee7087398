"""Atomic file writes: a file is either the old one or the new one, never a truncated mix."""
import contextlib
import glob
import os
import os.path as osp
import secrets
from typing import List, Union

#: suffix of the temporary files :func:`atomic_write` writes next to their target
PARTIAL_SUFFIX = '.partial'


def _fsync_dir(dirname: str) -> None:
    """Make a rename in ``dirname`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(filepath: Union[str, os.PathLike], data: Union[bytes, bytearray, memoryview],
                 fsync: bool = True) -> None:
    """Write ``data`` to ``filepath`` so that the file is either the old one or the new one.

    The bytes go to ``.{basename}.{random}.partial`` in the same directory (same file system, so
    the rename is atomic), which is flushed and ``fsync``-ed, then ``os.replace``-d over
    ``filepath``; the directory is ``fsync``-ed so the rename survives a power cut.  On an error
    the temporary file is removed and the error re-raised; a process *killed* mid-write leaves
    only the ``*.partial`` file (see :func:`remove_partial_files`).  The new file gets the usual
    permissions (``0o666`` minus the umask), like ``open(filepath, 'wb')``.
    """
    filepath = os.fspath(filepath)
    dirname = osp.dirname(osp.abspath(filepath))
    os.makedirs(dirname, exist_ok=True)
    tmp = osp.join(dirname, f'.{osp.basename(filepath)}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(dirname)


def remove_partial_files(dirname: str) -> List[str]:
    """Remove the ``.*.partial`` files :func:`atomic_write` leaves when its process is killed
    mid-write; returns the removed paths."""
    removed = []
    for path in glob.glob(osp.join(glob.escape(dirname), f'.*{PARTIAL_SUFFIX}')):
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed.append(path)
    return removed
