# The two names firmware modules need that MicroPython and CPython provide differently, in one
# place so each module imports them instead of repeating the fallbacks.
# (The "import X as X" form re-exports the names under mypy's strict no-implicit-reexport.)
try:
    from typing import TYPE_CHECKING as TYPE_CHECKING
except ImportError:  # MicroPython
    TYPE_CHECKING = False  # type: ignore[misc]

try:
    from micropython import const as const  # type: ignore[import-not-found]
except ImportError:  # CPython; MicroPython's compiler folds const() names away

    def const(x: int) -> int:
        return x


def unload(name: str) -> None:
    """Unload a firmware module nothing refers to any more (one loaded for boot or for one
    task), so the collector frees its code."""
    import sys

    import firmware

    sys.modules.pop("firmware." + name, None)
    if hasattr(firmware, name):
        delattr(firmware, name)
