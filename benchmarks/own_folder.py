"""Training on a plain folder of images: the file-list tool's speed and the start-up time of a
run that scans the folder vs one that reads the list (README.md, "Train on your own images").

    python benchmarks/own_folder.py make --out /tmp/fmnist_flat     # 70k PNGs, nested folders
    python benchmarks/own_folder.py time --root /tmp/fmnist_flat    # JSON to stdout

``make`` copies the Fashion-MNIST PNG tree of ``tools/prepare_data.py`` (60k train + 10k test)
into ``OUT/train`` and ``OUT/test`` without class folders, nested as ``AA/B/IIIII.png`` with
``IIIII`` the image's line in ``meta/{train,val}.txt``: sorted, the folder lists the images in
the order of the ImageNet-layout config, so a run on it can be compared with that config's.
``time`` measures ``tools/make_file_list.py`` on all 70k files (decode check, 0 and 2 worker
processes, and ``--no-check``) and the time to build the training dataset of the PIRL folder
config by a scan and from the list (median of ``--repeat``).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import statistics
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FOLDER_CONFIG = osp.join(REPO, 'configs/pirl/pirl_r18-w32_1xb64-3000it_folder.py')


def flat_name(i: int) -> str:
    """The nested path of the i-th image: sorted as strings, the names keep the index order."""
    return f'{i // 1000:02d}/{(i // 100) % 10}/{i:05d}.png'


def make(src: str, out: str) -> dict:
    counts = {}
    for split, sub in (('train', 'train'), ('val', 'test')):
        with open(osp.join(src, 'meta', f'{split}.txt')) as f:
            rels = [line.rsplit(' ', 1)[0] for line in f if line.strip()]
        for i, rel in enumerate(rels):
            dst = osp.join(out, sub, flat_name(i))
            os.makedirs(osp.dirname(dst), exist_ok=True)
            shutil.copyfile(osp.join(src, split, rel), dst)
        counts[sub] = len(rels)
    return counts


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 3)


def time_all(root: str, repeat: int) -> dict:
    from mmssl_ext.cli.make_file_list import main as make_list
    from mmssl_ext.datasets.checks import build_dataset_from_config
    res = dict(root=root, cpu=_cpu())
    out = osp.join(root, 'file_list.txt')
    for name, extra in (('list_decode_0_workers', []), ('list_decode_2_workers',
                                                        ['--workers', '2']),
                        ('list_no_check', ['--no-check'])):
        t = time.perf_counter()
        scan = make_list([root, '--out', out, *extra])
        res[name] = dict(seconds=round(time.perf_counter() - t, 2), files=scan.num_files,
                         readable=len(scan.images), corrupt=len(scan.corrupt))
    train = osp.join(root, 'train')
    train_list = osp.join(train, 'file_list.txt')
    make_list([train, '--out', train_list, '--no-check'])
    base = {'train_dataloader.dataset.data_root': train}

    def build(opts):
        return lambda: len(build_dataset_from_config(FOLDER_CONFIG, 'train', dict(base, **opts)))

    res['dataset_build_scan_s'] = _median_time(build({}), repeat)
    res['dataset_build_list_s'] = _median_time(
        build({'train_dataloader.dataset.ann_file': 'file_list.txt'}), repeat)
    res['dataset_len'] = build({})()
    return res


def _cpu() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip() + f' ({os.cpu_count()} CPUs)'
    except OSError:
        pass
    return 'unknown'


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    m = sub.add_parser('make', help='write the flattened 70k Fashion-MNIST folder')
    m.add_argument('--src', default=osp.join(REPO, 'data/fashion_mnist'))
    m.add_argument('--out', required=True)
    t = sub.add_parser('time', help='time the list tool and scan vs list start-up')
    t.add_argument('--root', required=True)
    t.add_argument('--repeat', type=int, default=3)
    args = p.parse_args(argv)
    res = make(args.src, args.out) if args.cmd == 'make' else time_all(args.root, args.repeat)
    json.dump(res, sys.stdout, indent=2)
    print()
    return res


if __name__ == '__main__':
    sys.path.insert(0, REPO)
    main()
