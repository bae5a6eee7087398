from .checkpoint import (CheckpointLoadError, load_checkpoint_safe, register_safe_globals,
                         safe_globals)

__all__ = ['CheckpointLoadError', 'load_checkpoint_safe', 'register_safe_globals', 'safe_globals']
