"""``tools/make_file_list.py DIR``: scan a folder of images once, check that every image loads
(decoded as in training), and write the readable ones as a list file that the folder configs
read (``train_dataloader.dataset.ann_file``), so that later runs start without a scan.

    python tools/make_file_list.py data/my_images --workers 4
    python tools/train.py configs/pirl/pirl_r18-w32_1xb64-3000it_folder.py --cfg-options \\
        train_dataloader.dataset.data_root=data/my_images \\
        train_dataloader.dataset.ann_file=file_list.txt

The list holds paths relative to DIR (mmpretrain's ``CustomDataset`` format without labels) in
the order a scan gives, so a run on the list equals a run on the scan.  Corrupt files are named
and left out; files without an image extension are counted.  Exit status 0 (also with corrupt
files: they are reported, not fatal); ``--strict``: 1 when any file is corrupt.
"""
import argparse
import os.path as osp
import sys
import time
from typing import List, Optional

from mmssl_ext.datasets.folder import DEFAULT_LIST_NAME, FolderScan, scan_folder, write_file_list


def _progress_printer(every: int = 10000):
    state = dict(next=every, t0=time.perf_counter())

    def show(done: int, total: int) -> None:
        if done >= state['next'] or done == total:
            rate = done / max(time.perf_counter() - state['t0'], 1e-9)
            print(f'  checked {done}/{total} images ({rate:.0f}/s)', flush=True)
            while state['next'] <= done:
                state['next'] += every
    return show


def main(argv: Optional[List[str]] = None) -> FolderScan:
    p = argparse.ArgumentParser(
        description='write the list of readable images under a folder (mmpretrain '
                    'CustomDataset ann_file, paths relative to the folder)')
    p.add_argument('folder', help='image folder (any nesting of sub-folders)')
    p.add_argument('--out', help=f'list file (default: FOLDER/{DEFAULT_LIST_NAME})')
    p.add_argument('--workers', type=int, default=0,
                   help='decode in this many processes (default 0: in this process)')
    p.add_argument('--no-check', action='store_true',
                   help='list every file with an image extension without decoding it (fast; '
                        'corrupt files then surface during training)')
    p.add_argument('--max-listed', type=int, default=10, help='corrupt / skipped files to print')
    p.add_argument('--strict', action='store_true', help='exit status 1 if any file is corrupt')
    args = p.parse_args(argv)
    if args.workers < 0:
        p.error(f'--workers must be >= 0, got {args.workers}')
    out = args.out or osp.join(args.folder, DEFAULT_LIST_NAME)
    rel_out = osp.relpath(osp.abspath(out), osp.abspath(args.folder))
    print(f'scanning {args.folder}' + ('' if args.no_check else ' and decoding every image'),
          flush=True)
    res = scan_folder(args.folder, check=not args.no_check, workers=args.workers,
                      exclude=[rel_out], progress=_progress_printer())
    t = time.perf_counter()
    if not res.images:
        raise SystemExit(f'{args.folder}: no readable image; nothing written\n'
                         f'{res.summary(args.max_listed)}')
    try:
        write_file_list(out, res.images)
    except OSError as e:
        raise SystemExit(f'cannot write the list to {out} ({type(e).__name__}: {e}); pass '
                         f'--out FILE to write it elsewhere (ann_file may be an absolute path)')
    res.seconds['write'] = time.perf_counter() - t
    print(res.summary(args.max_listed))
    ann = rel_out if not rel_out.startswith('..') else osp.abspath(out)
    print(f'wrote {len(res.images)} paths to {out}; train on it with\n  --cfg-options '
          f'train_dataloader.dataset.data_root={args.folder} '
          f'train_dataloader.dataset.ann_file={ann}')
    return res


def cli(argv: Optional[List[str]] = None) -> int:
    """``main`` with an exit status: 1 with ``--strict`` when a file is corrupt."""
    res = main(argv)
    strict = '--strict' in (sys.argv[1:] if argv is None else argv)
    return 1 if strict and res.corrupt else 0
