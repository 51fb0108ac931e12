"""Small measuring helpers shared by the benchmark's parts (no Beam, no Google clients)."""

import json
import math
import os
from typing import List, Optional, Tuple


def percentile(values: List[float], q: float) -> Optional[float]:
    """Nearest-rank percentile (q in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rounded(value: Optional[float], digits: int = 3) -> Optional[float]:
    return None if value is None else round(value, digits)


def peak_rss_mb(pid: int) -> Optional[float]:
    """The peak resident set size of a live process (VmHWM), in MiB."""
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> Optional[float]:
    """The resident set size of a live process now (VmRSS), in MiB."""
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, field: str) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU time of a live process so far (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def read_ops(path: str) -> Tuple[int, int]:
    """(reads, writes) summed from the file adapters.store.count_ops appends to."""
    reads = writes = 0
    try:
        with open(path) as f:
            for line in f:
                r, w = line.split()
                reads += int(r)
                writes += int(w)
    except FileNotFoundError:
        pass
    return reads, writes


def machine() -> dict:
    """Cores, memory and load of this machine, for the record."""
    memory_mb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cores": os.cpu_count(), "memory_mb": memory_mb, "loadavg_1m_at_start": round(load[0], 2) if load else None}


def emit(result: dict, output: str) -> None:
    """Writes a child step's JSON result to `output`, or to stdout for "-"."""
    text = json.dumps(result, indent=1, sort_keys=True)
    if output == "-":
        print(text)
    else:
        with open(output, "w") as f:
            f.write(text)
