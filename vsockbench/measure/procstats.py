"""The measuring machine's own counters over a run's window: each CPU's busy time
(``/proc/stat``) and each interrupt line's count (``/proc/interrupts``).

In a guest these are what the model's ``summary["cpus"]["guest"]["per_vcpu_work_util"]`` and
``summary["devices"][cid]["interrupts"]`` stand for: the guest's own view of its vCPUs (busy,
not idle: KVM's halt polling is the host's, not in it) and the interrupts its vsock device
raised.  ``vsockbench measure client --guest-stats`` samples them on the client's machine (the
guest, by the harness's convention) at the window's start and end and writes the deltas as
``cpu_guest_work`` and ``irq_rate`` rows.  Linux only; elsewhere :func:`sample` returns None.
"""

from __future__ import annotations

import os
import re

__all__ = ["sample", "delta", "parse_stat", "parse_interrupts", "irq_rate"]

# /proc/stat cpuN fields: user nice system idle iowait irq softirq steal guest guest_nice
# (proc(5)); guest and guest_nice are already counted in user and nice.  Busy = all but idle,
# iowait and steal (time the hypervisor ran something else: not this guest's work).
_BUSY_FIELDS = (0, 1, 2, 5, 6)


def parse_stat(text: str) -> list[int]:
    """Busy jiffies of each CPU (``cpu0``, ``cpu1``, ... in order) from /proc/stat's text."""
    out = []
    for line in text.splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            fields = [int(x) for x in line.split()[1:]]
            out.append(sum(fields[i] for i in _BUSY_FIELDS if i < len(fields)))
    return out


def parse_interrupts(text: str) -> dict[str, int]:
    """Each line of /proc/interrupts -> its count summed over the CPUs, keyed by
    ``"<irq>: <description>"`` (``"41: PCI-MSIX-0000:00:04.0 1-edge virtio3-rx"``,
    ``"LOC: Local timer interrupts"``)."""
    lines = text.splitlines()
    if not lines:
        return {}
    ncpu = len(lines[0].split())
    out = {}
    for line in lines[1:]:
        irq, sep, rest = line.partition(":")
        if not sep:
            continue
        tokens = rest.split()
        counts = []
        for tok in tokens[:ncpu]:
            if not tok.isdigit():
                break
            counts.append(int(tok))
        if not counts:
            continue
        out[f"{irq.strip()}: {' '.join(tokens[len(counts):])}"] = sum(counts)
    return out


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def sample() -> dict | None:
    """This machine's counters now (None where /proc does not have them)."""
    stat, irqs = _read("/proc/stat"), _read("/proc/interrupts")
    if stat is None or irqs is None:
        return None
    return {"busy_jiffies": parse_stat(stat), "irqs": parse_interrupts(irqs)}


def delta(a: dict | None, b: dict | None, window_s: float) -> dict | None:
    """What happened between two :func:`sample` calls ``window_s`` apart: each CPU's busy
    seconds and each interrupt line's count (lines present in both)."""
    if a is None or b is None or window_s <= 0 or len(a["busy_jiffies"]) != len(b["busy_jiffies"]):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = [(y - x) / hz for x, y in zip(a["busy_jiffies"], b["busy_jiffies"])]
    irqs = {k: b["irqs"][k] - v for k, v in a["irqs"].items() if k in b["irqs"]}
    return {"window_s": window_s, "busy_s": busy, "irqs": irqs}


def irq_rate(machine: dict, pattern: str) -> tuple[float, list[str]]:
    """Interrupts per second over the window on the lines whose key matches ``pattern``
    (``re.search``), and those lines' keys."""
    rx = re.compile(pattern)
    keys = [k for k in machine["irqs"] if rx.search(k)]
    return sum(machine["irqs"][k] for k in keys) / machine["window_s"], keys
