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
COPY_COMMANDS = ('install', 'build', 'build_py', 'bdist_wheel', 'sdist')


def add_mim_extension():
    """Fill ``mmssl_ext/.mim`` with links (editable install) or copies (any other build)."""
    if any(cmd in sys.argv for cmd in EDITABLE_COMMANDS):
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in COPY_COMMANDS):
        mode = 'copy'
    else:
        return  # egg_info, dist_info, ...: nothing is packaged
    repo = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(repo, 'mmssl_ext', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(repo, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst, target_is_directory=osp.isdir(src))
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup()
