"""Memory banks shared by the instance-discrimination methods (PIRL, NPID, ODC)."""
from .memory_bank import MemoryBank
from .odc_memory import ODCMemory  # noqa: F401

__all__ = ['MemoryBank']
