"""Memory the runtimes keep after a large input, handed back to the system.

glibc keeps freed heap for reuse, and each onnxruntime session keeps its CPU arena at the largest
size a run grew it to: a 2048x2048 photo tiled with 900 faces left MTCNN's sessions holding about
1 GB. :func:`trim_heap` returns the C heap's free memory (``malloc_trim``); :func:`shrink_arena`
runs a session once on a tiny input with onnxruntime's arena shrinkage, which frees the arena's
regions that no run is using. :meth:`ferkit.Recognizer.release_memory` does both for its detector
and classifier (the HTTP server calls it after each image of ``TRIM_PIXELS`` or more).
"""

from __future__ import annotations

from typing import Any

_TRIM: Any = None
_SHRINK: Any = None


def trim_heap() -> bool:
    """Return the C heap's free memory to the system (glibc's ``malloc_trim``); False where there
    is no glibc (macOS, musl, Windows)."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if not _TRIM:
        return False
    _TRIM(0)
    return True


def release(*parts: Any) -> None:
    """Each part's ``release_memory()``, where it has one (a detector, model or recognizer of the caller's
    may lack it)."""
    for part in parts:
        method = getattr(part, "release_memory", None)
        if callable(method):
            method()


def shrink_arena(session: Any, feeds: dict) -> None:
    """Run an onnxruntime ``session`` once on ``feeds`` (keep them tiny) with arena shrinkage on: the
    CPU arena's regions not in use, the ones a large input made it grow, go back to the system (a
    CUDA session's GPU arena is left as it is). Safe beside other threads' runs of the same session
    (the regions they use are kept)."""
    global _SHRINK
    if _SHRINK is None:
        import onnxruntime as ort

        ro = ort.RunOptions()
        ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        _SHRINK = ro
    session.run(None, feeds, _SHRINK)
