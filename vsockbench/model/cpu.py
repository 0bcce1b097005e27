"""CPU pools and threads.

Guest vCPUs and host cores are pools of identical CPUs; every thread of the
model (application threads, the guest driver's work items, the vhost worker,
a vhost-user daemon, the VMM event thread) consumes CPU time from one pool
and queues FIFO when all CPUs of its pool are busy.  Simplification: no
preemption and no CPU affinity (the kernel's bound workqueue runs a work item
on the CPU that queued it; we let any free vCPU take it); vCPU threads are
assumed to own their host cores (as Firecracker's CI pins them).

Wake-up preemption, approximated: a thread that has just woken (it slept since
its last run) goes to the head of the wait queue, so it runs as soon as one
CPU finishes its current charge (at most one packet's work), as CFS/EEVDF let a
waking task with lag preempt a CPU hog; a thread that runs back to back (a bulk
sender between two packets) queues at the tail.

Speed: an uncontended ``run`` costs one SimPy event (the timeout), which is
what makes the model stay near the SimPy floor.
"""

from __future__ import annotations

from collections import deque

from simpy.events import NORMAL, Timeout

__all__ = ["CpuPool", "Thread", "wake_after"]


def wake_after(env, event, delay: float) -> None:
    """Succeed ``event`` ``delay`` seconds from now: a sleeping thread's wake-up latency folded
    into its wake event, which saves the separate timeout (one SimPy event per wake-up).
    Same as ``event.succeed()`` (it sets _ok/_value and schedules) but with a delay."""
    event._ok = True
    event._value = None
    env.schedule(event, NORMAL, delay)


class CpuPool:
    """``size`` identical CPUs; FIFO hand-over when all are busy."""

    __slots__ = ("env", "name", "size", "free", "waiters")

    def __init__(self, env, name: str, size: int):
        self.env, self.name, self.size, self.free = env, name, size, size
        self.waiters: deque = deque()  # (thread, cost, done_event)

    def _release(self, _event=None) -> None:
        if self.waiters:
            thread, cost, done = self.waiters.popleft()
            thread._start(cost, done)
        else:
            self.free += 1


class Thread:
    """A schedulable thread: accumulates busy time within the measured window."""

    __slots__ = ("env", "pool", "name", "side", "busy", "busy_total", "t0", "t1", "runs", "debt", "_release", "last_end")

    def __init__(self, env, pool: CpuPool, name: str, side: str, window: tuple[float, float]):
        self.env, self.pool, self.name, self.side = env, pool, name, side
        self.t0, self.t1 = window
        self.busy = 0.0  # seconds of CPU inside the measured window
        self.busy_total = 0.0
        self.runs = 0
        self.debt = 0.0  # CPU owed from off-path work (a kick's VM exit), paid at the next run
        self._release = pool._release
        self.last_end = 0.0  # when this thread's last CPU charge ends

    def _account(self, start: float, cost: float) -> None:
        self.busy_total += cost
        self.runs += 1
        lo = start if start > self.t0 else self.t0
        end = start + cost
        hi = end if end < self.t1 else self.t1
        if hi > lo:
            self.busy += hi - lo

    def run(self, cost: float):
        """An event that fires after this thread has had ``cost`` seconds of CPU."""
        if self.debt:
            cost += self.debt
            self.debt = 0.0
        pool = self.pool
        if pool.free:  # the hot path: inlined accounting, one Timeout
            pool.free -= 1
            env = self.env
            start = env._now
            self.busy_total += cost
            self.runs += 1
            end = start + cost
            if end > self.t0 and start < self.t1:
                self.busy += (end if end < self.t1 else self.t1) - (start if start > self.t0 else self.t0)
            self.last_end = end
            ev = Timeout(env, cost)
            ev.callbacks.append(self._release)
            return ev
        done = self.env.event()
        if self.env._now > self.last_end:  # woke from sleep: wake-up preemption (see module doc)
            pool.waiters.appendleft((self, cost, done))
        else:
            pool.waiters.append((self, cost, done))
        return done

    def _start(self, cost: float, done) -> None:
        self._account(self.env.now, cost)
        self.last_end = self.env.now + cost
        t = self.env.timeout(cost)
        pool = self.pool

        def finish(_ev, done=done):
            pool._release()
            done.succeed()

        t.callbacks.append(finish)
