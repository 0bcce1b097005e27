"""CPU pools and threads.

Guest vCPUs and host cores are pools of identical CPUs; every thread of the
model (application threads, the guest driver's work items, the vhost worker,
a vhost-user daemon, the VMM event thread) consumes CPU time from one pool
and queues FIFO when all CPUs of its pool are busy.  Simplification: no
preemption and no CPU affinity (the kernel's bound workqueue runs a work item
on the CPU that queued it; we let any free vCPU take it); vCPU threads are
assumed to own their host cores (as Firecracker's CI pins them).

Wake-up preemption (CFS/EEVDF let a waking task with lag preempt a CPU hog;
check_preempt_wakeup_fair): a thread that has just woken (it slept since its
last run) and finds every CPU busy preempts the running thread with the most
work left, if that is more than its own charge; it runs at once, and the
preempted thread is delayed by as much at its next charge (the SimPy timeout
of its current charge cannot be moved, so the delay lands one charge later).
Otherwise it goes to the head of the wait queue; a thread that runs back to
back (a bulk sender between two packets) queues at the tail.

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

    __slots__ = ("env", "name", "size", "free", "waiters", "holders", "preemptions")

    def __init__(self, env, name: str, size: int):
        self.env, self.name, self.size, self.free = env, name, size, size
        self.waiters: deque = deque()  # (thread, cost, done_event)
        self.holders: dict = {}  # thread -> end of its current charge
        self.preemptions = 0

    def _release(self, _event=None) -> None:
        if self.waiters:
            thread, cost, done = self.waiters.popleft()
            thread._start(cost, done)
        else:
            self.free += 1


class Thread:
    """A schedulable thread: accumulates busy time within the measured window."""

    __slots__ = ("env", "pool", "name", "side", "busy", "busy_total", "t0", "t1", "runs", "debt", "_release", "last_end", "delay")

    def __init__(self, env, pool: CpuPool, name: str, side: str, window: tuple[float, float]):
        self.env, self.pool, self.name, self.side = env, pool, name, side
        self.t0, self.t1 = window
        self.busy = 0.0  # seconds of CPU inside the measured window
        self.busy_total = 0.0
        self.runs = 0
        self.debt = 0.0  # CPU owed from off-path work (a kick's VM exit), paid at the next run
        self._release = self._release_cpu
        self.last_end = 0.0  # when this thread's last CPU charge ends
        self.delay = 0.0  # time it was preempted for, served at its next charge

    def _release_cpu(self, _event=None) -> None:
        self.pool.holders.pop(self, None)
        self.pool._release()

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
        env = self.env
        if pool.free:  # the hot path: inlined accounting, one Timeout
            pool.free -= 1
            start = env._now
            self.busy_total += cost
            self.runs += 1
            end = start + cost
            if end > self.t0 and start < self.t1:
                self.busy += (end if end < self.t1 else self.t1) - (start if start > self.t0 else self.t0)
            wait = cost
            if self.delay:
                wait += self.delay
                self.delay = 0.0
            self.last_end = start + wait
            pool.holders[self] = start + wait
            ev = Timeout(env, wait)
            ev.callbacks.append(self._release)
            return ev
        now = env._now
        if now > self.last_end:  # woke from sleep: wake-up preemption (see the module doc)
            holders = pool.holders
            victim = max(holders, key=holders.__getitem__) if holders else None
            if victim is not None and victim is not self and holders[victim] - now > cost:
                victim.delay += cost
                holders[victim] += cost
                pool.preemptions += 1
                self._account(now, cost)
                self.last_end = now + cost
                return Timeout(env, cost)  # on the victim's CPU: no slot taken, none released
            done = env.event()
            pool.waiters.appendleft((self, cost, done))
            return done
        done = env.event()
        pool.waiters.append((self, cost, done))
        return done

    def _start(self, cost: float, done) -> None:
        now = self.env.now
        self._account(now, cost)
        wait = cost + self.delay
        self.delay = 0.0
        self.last_end = now + wait
        self.pool.holders[self] = now + wait
        t = self.env.timeout(wait)

        def finish(_ev, done=done):
            self._release_cpu()
            done.succeed()

        t.callbacks.append(finish)
