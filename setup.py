"""Installs mmssl_ext; metadata in setup.cfg.

``mmssl_ext/.mim/`` carries what OpenMMLab's ``mim`` and mmpretrain's ``ModelHub`` look for in an
installed package (configs, tools, model-index.yml), as mmpretrain's own ``add_mim_extension``:
symlinks into the repository for an editable install (``pip install -e .``: setuptools runs
``develop`` or, with PEP 660, ``editable_wheel``), copies for a wheel / sdist / plain install.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import setup

MIM_FILES = ('configs', 'tools', 'model-index.yml')
EDITABLE_COMMANDS = ('develop', 'editable_wheel')


def _place(src: str, dst: str, mode: str) -> None:
    """Replace ``dst`` by a relative symlink to ``src`` or by a copy of it."""
    if osp.islink(dst) or osp.isfile(dst):
        os.remove(dst)
    elif osp.isdir(dst):
        shutil.rmtree(dst)
    if mode == 'symlink':
        os.symlink(osp.relpath(src, osp.dirname(dst)), dst, target_is_directory=osp.isdir(src))
    elif osp.isdir(src):
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    else:
        shutil.copyfile(src, dst)


def add_mim_extension():
    """Fill ``mmssl_ext/.mim`` with links (editable install) or copies (any other build).

    Every non-editable command copies, the metadata steps (``egg_info`` / ``dist_info``, which pip
    runs in a process of their own before ``bdist_wheel``) included: their file list must already
    name the copies, else a first ``pip install .`` ships a ``.mim`` without tools or
    model-index.yml.  Returns the entries that were links, to be linked again once the build is
    done, so that building a wheel does not leave an editable checkout with stale copies.
    """
    mode = 'symlink' if any(cmd in sys.argv for cmd in EDITABLE_COMMANDS) else 'copy'
    repo = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(repo, 'mmssl_ext', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    relink = []
    for name in MIM_FILES:
        src = osp.join(repo, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if mode == 'copy' and osp.islink(dst):
            relink.append((src, dst))
        _place(src, dst, mode)
    return relink


if __name__ == '__main__':
    relink = add_mim_extension()
    try:
        setup()
    finally:
        for src, dst in relink:
            _place(src, dst, 'symlink')
