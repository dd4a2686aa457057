"""The box's CPU and memory as Linux reports them in /proc (nothing when it does not)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    busy_s: float  # every core's non-idle time since boot
    total_s: float  # every core's time since boot


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def box_cpu_times() -> CpuTimes | None:
    """The whole box's CPU time (first line of /proc/stat)."""
    try:
        fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in fields[:8]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle + iowait
    total = sum(ticks)
    return CpuTimes((total - idle) / hz, total / hz)


def process_cpu_s(pid: int) -> float | None:
    """User + system seconds of one process (utime, stime of /proc/PID/stat)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz


def process_rss_mb(pid: int) -> float | None:
    """Resident memory of one process, in MiB."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_pss_mb(pid: int) -> float | None:
    """Proportional memory of one process, in MiB: its own pages plus its share of those it
    shares (the box's processes share the code and data of the modules the fork server
    loaded once); summed over processes, it is what they take together. RSS where the kernel
    does not say."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return process_rss_mb(pid)


def memory_available_mb() -> float | None:
    try:
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None
