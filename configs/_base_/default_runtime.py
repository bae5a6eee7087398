# The runtime every mmssl_ext training config inherits: the same behaviour under our
# tools/train.py, mmpretrain's tools/train.py and `mim train` (mmssl_ext/engine/runner.py).
runner_type = 'SSLRunner'  # applies `ssl_runtime` to the config before the Runner is built
ssl_runtime = dict(
    # appended to custom_hooks unless listed there (list one to tune or switch it off)
    hooks=[
        dict(type='NaNLossCheckHook'),  # stop at the first NaN / Inf loss term, name it
        dict(type='MemoryBankSizeCheckHook'),  # a memory bank shorter than the training set
        dict(type='RNGStateHook'),  # RNG states in every checkpoint: --resume continues exactly
        dict(type='CollapseMonitorHook'),  # collapse measures of a fixed probe set
    ],
    atomic_checkpoints=True,  # CheckpointHook -> AtomicCheckpointHook (temporary file + rename)
    checked_image_loading=True,  # train LoadImageFromFile -> LoadImageFromFileChecked
    resumable_swav=True,  # SwAVHook -> ResumableSwAVHook (the queue travels in checkpoints)
)
