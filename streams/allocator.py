"""The C allocator of a long-running worker: few malloc arenas, free pages given back.

A worker's RSS is mostly memory glibc's ``malloc`` and Python's own small-object allocator
(pymalloc) took from the kernel. Measured (bench/README.md, "Seventh pass: memory"): a batch's
transient buffers (Redis replies and commands, Kafka records, encoded profiles, all larger than
pymalloc's 512-byte blocks) leave tens of MiB of *free* memory inside malloc's arenas that glibc
keeps resident, because it only returns the top of an arena to the kernel, and every thread
that allocates (the lane's, the relay's, librdkafka's) gets an arena of its own, up to eight
per core. Two remedies, both glibc's own and both no-ops elsewhere (musl, macOS):

* :func:`cap_arenas`: at most :data:`ARENA_MAX` arenas (``mallopt(M_ARENA_MAX)``), what
  ``MALLOC_ARENA_MAX=2`` in the image does, for a worker started any other way; an operator's
  ``MALLOC_ARENA_MAX`` (or ``GLIBC_TUNABLES=glibc.malloc.arena_max=N``) wins. It must run
  before the worker starts its first thread.
* :class:`Trimmer`: ``malloc_trim(0)`` every :data:`TRIM_INTERVAL_S` in a thread of its own,
  which hands every whole free page inside the arenas back to the kernel (``madvise``); a
  worker under load takes most of it again before the next trim (its batches need it), an
  idle one keeps it returned. A trim took 6-27 ms with ~50 MiB free, and the pages fault in
  again as they are reused: ~0.1 % of a core at one trim every 30 s.
* :func:`hold_freed_pages`: malloc keeps what a batch freed for the next batch instead of
  giving it back at once (``mallopt``: a fixed mmap threshold of :data:`MMAP_THRESHOLD`, a
  trim threshold of :data:`TRIM_THRESHOLD`). With glibc's adaptive thresholds, a batch's
  transient buffers (~10 MiB of them: replies, joined commands, encoded profiles) were handed
  back when freed (``munmap``, the heap's top trimmed) and every page of them faulted in again
  by the next batch: a page fault costs ~3 µs in the bench's VM and the lane's thread took
  ~0.8 per event, the commit's join of ~1 MiB alone ~0.7 µs per event (issue 17.2). The
  :class:`Trimmer` still hands the free pages back every :data:`TRIM_INTERVAL_S`: an idle
  worker keeps no more than before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from typing import Final

log = logging.getLogger(__name__)

#: malloc arenas a worker may have (glibc's default: 8 per core).
ARENA_MAX: Final = 2
#: Seconds between two ``malloc_trim(0)`` of a worker.
TRIM_INTERVAL_S: Final = 30.0
#: ``mallopt``'s parameter number for the arena limit (glibc's ``malloc.h``).
_M_ARENA_MAX: Final = -8
#: Allocations of at least this many bytes are ``mmap``'d (and ``munmap``'d when freed): above
#: any buffer of a batch; glibc's maximum (``HEAP_MAX_SIZE / 2`` on 64-bit).
MMAP_THRESHOLD: Final = 32 << 20
#: Free memory at the top of a heap is handed back once it exceeds this (glibc's default: 128
#: KiB, raised with the adaptive mmap threshold to twice it): above a batch's transient buffers.
TRIM_THRESHOLD: Final = 64 << 20
#: ``mallopt``'s parameter numbers (``malloc.h``) and their environment variables and tunables
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_THRESHOLDS: Final = (
    (_M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    (_M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
)


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has ``malloc_trim`` and ``mallopt``), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC: Final = _glibc()


def cap_arenas(environ: dict[str, str] | os._Environ[str] = os.environ) -> int | None:
    """Limit malloc to :data:`ARENA_MAX` arenas unless ``MALLOC_ARENA_MAX`` or the tunable
    ``glibc.malloc.arena_max`` is set (glibc has applied it then); the limit in force, None
    where the C library is not glibc."""
    if _LIBC is None:
        return None
    configured = environ.get("MALLOC_ARENA_MAX", "").strip()
    if configured.isdigit():
        return int(configured)
    for tunable in environ.get("GLIBC_TUNABLES", "").split(":"):
        name, _, value = tunable.partition("=")
        if name == "glibc.malloc.arena_max" and value.isdigit():
            return int(value)
    if not _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX):
        log.warning("mallopt(M_ARENA_MAX, %d) refused; malloc arenas are not capped", ARENA_MAX)
        return None
    return ARENA_MAX


def hold_freed_pages(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, int]:
    """Fixed mmap and trim thresholds (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`), each
    unless the operator set it (its ``MALLOC_*_`` variable or glibc tunable: glibc applied it
    then); the parameters set, by variable name (none where the C library is not glibc)."""
    if _LIBC is None:
        return {}
    tunables = {
        name
        for name, _, _ in (t.partition("=") for t in environ.get("GLIBC_TUNABLES", "").split(":"))
    }
    done = {}
    for param, value, variable, tunable in _THRESHOLDS:
        if variable in environ or tunable in tunables:
            continue
        if _LIBC.mallopt(param, value):
            done[variable] = value
        else:
            log.warning("mallopt(%s, %d) refused", variable, value)
    return done


def trim() -> bool:
    """``malloc_trim(0)``: give every whole free page in malloc's arenas back to the kernel.
    True if glibc released memory."""
    return bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False


class Trimmer:
    """A daemon thread that calls :func:`trim` every ``interval_s`` until :meth:`stop`."""

    def __init__(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.trims = 0  # how many trims ran
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loom-malloc-trim", daemon=True)

    def start(self) -> Trimmer:
        if _LIBC is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            trim()
            self.trims += 1
