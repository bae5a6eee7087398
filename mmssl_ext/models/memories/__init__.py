"""Memory banks shared by the instance-discrimination methods (PIRL, NPID, ODC)."""
from .memory_bank import MemoryBank

__all__ = ['MemoryBank']
