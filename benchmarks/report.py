"""What every benchmark writes with its numbers: the command, the machine and the date, as JSON
and as a markdown table under ``benchmarks/results/`` (``<name>_<tag>.json`` / ``.md``)."""
import datetime
import json
import os
import os.path as osp
import platform
import sys
from typing import List, Optional

RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'results')


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


def new_report(**fields) -> dict:
    """A report dict with ``command`` (as run), ``machine`` and ``date`` filled in."""
    script = osp.relpath(osp.abspath(sys.argv[0]), osp.dirname(osp.dirname(RESULTS)))
    report = dict(command=' '.join(['python', script] + sys.argv[1:]),
                  date=datetime.date.today().isoformat())
    report.update(fields)
    report.setdefault('machine', machine())
    return report


def provenance(report: dict) -> List[str]:
    """Markdown lines naming the command, the machine and the date of ``report``."""
    return [f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
            f"Date: {report['date']}", '']


def write(report: dict, markdown: str, name: str, tag: str, out: str = RESULTS) -> str:
    """Write ``<out>/<name>_<tag>.json`` and ``.md``; returns the path without extension."""
    os.makedirs(out, exist_ok=True)
    base = osp.join(out, f'{name}_{tag}')
    with open(base + '.json', 'w') as f:
        json.dump(report, f, indent=1)
    with open(base + '.md', 'w') as f:
        f.write(markdown)
    return base
