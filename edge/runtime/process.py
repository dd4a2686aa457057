"""What every process of the box sets up first: its CPU priority, one thread for OpenCV and the
numeric libraries (the box's cores are shared out between processes, not inside each), logging,
and signals (the supervisor stops its children, Ctrl-C does not)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def child_environment() -> dict[str, str]:
    """Environment for the box's child processes: numeric libraries single-threaded, and two
    malloc arenas (glibc gives each thread its own otherwise: a camera's lanes and the frames
    they pass between them would hold hundreds of MB each in fragments)."""
    return {**dict.fromkeys(THREAD_VARS, "1"), "MALLOC_ARENA_MAX": "2"}


def prepare_child(nice: int = 0, log_level: int = logging.INFO) -> None:
    """Run first in every child process of the box."""
    for name, value in child_environment().items():
        os.environ.setdefault(name, value)
    if nice > 0:
        with contextlib.suppress(OSError):  # raising one's niceness never needs privileges
            os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us in order
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(log_level)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # the detection service needs no OpenCV threads of its own
        pass
