"""Deprecated: the label-noise control experiment moved to
:mod:`mmssl_ext.clusterfit.experiments.noise_control` and its flags to
:mod:`mmssl_ext.cli.clusterfit` (``tools/clusterfit.py noise-control``).  This module keeps the
old names for one release."""
import argparse
import warnings
from typing import List, Optional

from mmssl_ext.cli.clusterfit import _add_noise_control_args as add_arguments
from mmssl_ext.cli.clusterfit import run_noise_control as run_from_args
from mmssl_ext.clusterfit.experiments.noise_control import (DEFAULT_CONFIG, DONE, MODEL_NAMES,
                                                            MODELS_ORDER, NoiseControl,
                                                            format_markdown, inject_label_noise,
                                                            level_name, noise_report,
                                                            plot_results, read_list, select)
from mmssl_ext.clusterfit.formats import write_annotation as write_list
from mmssl_ext.evaluation.layer_probe import linear_probe as _linear_probe

warnings.warn('mmssl_ext.apis.clusterfit_control moved to '
              'mmssl_ext.clusterfit.experiments.noise_control; the old name goes in the next '
              'release', DeprecationWarning, stacklevel=2)

__all__ = ['DEFAULT_CONFIG', 'DONE', 'MODELS_ORDER', 'MODEL_NAMES', 'NoiseControl',
           'add_arguments', 'format_markdown', 'inject_label_noise', 'level_name', 'linear_probe',
           'main', 'noise_report', 'plot_results', 'read_list', 'run_from_args', 'select',
           'write_list']


def linear_probe(train_f, train_y, test_f, test_y, weight_decay: float = 1e-4,
                 max_iter: int = 300) -> float:
    """The old probe's objective (``weight_decay * ||W||^2``) on
    :func:`mmssl_ext.evaluation.layer_probe.linear_probe` (which penalises half of that)."""
    return _linear_probe(train_f, train_y, test_f, test_y, weight_decay=2 * weight_decay,
                         max_iter=max_iter)


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=NoiseControl.__doc__)
    add_arguments(p)
    return run_from_args(p.parse_args(argv))
