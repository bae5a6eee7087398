"""``tools/check_data.py CONFIG``: list the files a config's dataset names but the disk lacks."""
import argparse
from typing import Dict, List, Optional

from mmssl_ext.datasets.checks import FileCheck, build_dataset_from_config, check_dataset


def main(argv: Optional[List[str]] = None) -> Dict[str, FileCheck]:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='check that every image of a config\'s dataset exists')
    p.add_argument('config', help='config file (or pkg::path)')
    p.add_argument('--split', nargs='+', default=['train'], choices=['train', 'val', 'test'],
                   help='which dataloaders\' datasets to check (default: train)')
    p.add_argument('--max-listed', type=int, default=10, help='missing files to print')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, xxx=yyy')
    args = p.parse_args(argv)
    results = {}
    for split in args.split:
        dataset = build_dataset_from_config(args.config, split, args.cfg_options)
        results[split] = res = check_dataset(dataset)
        print(f'[{split}] {res.summary(args.max_listed)}')
    return results


def cli(argv: Optional[List[str]] = None) -> int:
    """``main`` with an exit status: 1 when a file is missing."""
    return 0 if all(r.ok for r in main(argv).values()) else 1
