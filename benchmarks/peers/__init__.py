"""Peer comparison in the same harness: the ``lightly`` package's SimCLR, MoCo v2, BYOL, PIRL-style
jigsaw and DINO trained on our data, backbone, resolution and budget, scored by our evaluation;
one module per method, as lightly's own benchmarks (what is matched: ``benchmarks/README.md``)."""
from benchmarks.peers.common import (OURS, Peer, PooledBackbone, build_backbone, config_views,
                                     method_cfg, quiet_mmengine, schedule, training_files)
from benchmarks.peers.harness import (PEER_METHODS, PEERS, data_pipeline_ms, images_per_sample,
                                      main, markdown, parse_args, result_name, run_lightly,
                                      run_ours)

__all__ = [
    'OURS', 'PEERS', 'PEER_METHODS', 'Peer', 'PooledBackbone', 'build_backbone', 'config_views',
    'data_pipeline_ms', 'images_per_sample', 'main', 'markdown', 'method_cfg', 'parse_args',
    'quiet_mmengine', 'result_name', 'run_lightly', 'run_ours', 'schedule', 'training_files'
]
