# What firmware modules need that MicroPython and CPython provide or need differently, in one
# place so each module imports it instead of repeating the fallbacks.
# (The "import X as X" form re-exports the names under mypy's strict no-implicit-reexport.)
try:
    from typing import TYPE_CHECKING as TYPE_CHECKING
except ImportError:  # MicroPython
    TYPE_CHECKING = False  # type: ignore[misc]

import sys

try:
    from micropython import const as const  # type: ignore[import-not-found]
except ImportError:  # CPython; MicroPython's compiler folds const() names away

    def const(x: int) -> int:
        return x


def unload(name: str) -> None:
    """Unload a firmware module nothing refers to any more (one loaded for boot or for one
    task), so the collector frees its code."""
    import firmware

    sys.modules.pop("firmware." + name, None)
    if hasattr(firmware, name):
        delattr(firmware, name)


def collect() -> None:
    """Collect garbage now, before a burst of allocations that needs long free runs, on
    MicroPython only: its 64 KB first-fit heap fails by fragmentation (docs/firmware.md,
    "Heap"). CPython's allocator does not, and a full collection there costs the fleet
    simulator, which runs every tag's firmware in one large process, far more than it saves."""
    if sys.implementation.name == "micropython":
        import gc

        gc.collect()
