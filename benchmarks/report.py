"""What every benchmark writes with its numbers: the command, the machine and the date, as JSON
and as a markdown table under ``benchmarks/results/`` (``<harness>_<name>.json`` / ``.md``, the
name saying what was measured: :func:`result_name`)."""
import datetime
import json
import os
import os.path as osp
import platform
import sys
from typing import List, Optional, Sequence, Union

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESULTS = osp.join(REPO, 'benchmarks', 'results')


def machine(threads: Optional[int] = None, device: str = 'cpu') -> str:
    """``'<CPU model>, 2 cores, torch 2.14.1, CPU, 2 threads'`` (or the GPU's name)."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name'))
    except (OSError, StopIteration):
        pass
    if device.startswith('cuda') and torch.cuda.is_available():
        where = torch.cuda.get_device_name(0)
    else:
        n = threads or torch.get_num_threads()
        where = f"CPU, {n} thread{'s' if n > 1 else ''}"
    return f'{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {where}'


def command(module: str, argv: Optional[Sequence[str]] = None) -> str:
    """``'python -m benchmarks.quality --budget 100000'``: how ``module`` was run, with ``argv``
    (default: this process's arguments)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return ' '.join(['python', '-m', module] + args)


def new_report(module: str, argv: Optional[Sequence[str]] = None, **fields) -> dict:
    """A report dict with ``command`` (``module`` run with ``argv``), ``machine`` and ``date``."""
    report = dict(command=command(module, argv), date=datetime.date.today().isoformat())
    report.update(fields)
    report.setdefault('machine', machine())
    return report


def provenance(report: dict) -> List[str]:
    """Markdown lines naming the command, the machine and the date of ``report``."""
    return [f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
            f"Date: {report['date']}", '']


def count(n: int) -> str:
    """``100000`` -> ``'100k'`` (an exact thousand), else the number itself."""
    return f'{n // 1000}k' if n and n % 1000 == 0 else str(n)


def result_name(what: Union[str, Sequence[str]], *setting: str,
                seed: Optional[int] = None) -> str:
    """The name of a result file after what it measures: ``<what>_<setting>[_seed<N>]``, e.g.
    ``pirl+rotation_cpu-100k_seed0``: ``what`` (the methods, joined by ``+``), the setting
    (device, budget, ... joined by ``-``) and the training seed (none: nothing trained)."""
    what = what if isinstance(what, str) else '+'.join(what)
    name = '_'.join([what or 'none', '-'.join(s for s in setting if s)])
    return name if seed is None else f'{name}_seed{seed}'


def write(report: dict, markdown: str, harness: str, name: str, out: str = RESULTS) -> str:
    """Write ``<out>/<harness>_<name>.json`` and ``.md``; returns the path without extension."""
    os.makedirs(out, exist_ok=True)
    base = osp.join(out, f'{harness}_{name}')
    with open(base + '.json', 'w') as f:
        json.dump(report, f, indent=1)
    with open(base + '.md', 'w') as f:
        f.write(markdown)
    return base
