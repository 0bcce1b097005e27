"""CPU pools and threads.

Guest vCPUs and host cores are pools of identical CPUs; every thread of the
model (application threads, the guest driver's work items, the vhost worker,
a vhost-user daemon, the VMM event thread) consumes CPU time from one pool
and queues FIFO when all CPUs of its pool are busy.  Simplifications: preemption
only as described below (a woken thread's, and PREEMPT_NONE's need_resched at a
section end), and no CPU affinity except a pinned guest's (the kernel's bound
workqueue runs a work item on the CPU that queued it; an unpinned pool lets any
free vCPU take it); vCPU threads are assumed to own their host cores (as
Firecracker's CI pins them).

Wake-up preemption (CFS lets a woken task preempt the running one,
check_preempt_wakeup in 4.14-6.6, check_preempt_wakeup_fair under EEVDF from
6.7): a thread that has just woken (it slept since its last run) and finds
every CPU busy preempts the running thread with the most work left, if that is
more than its own charge; it runs at once, and the preempted thread is delayed
by as much at its next charge (the SimPy timeout of its current charge cannot
be moved, so the delay lands one charge later).  Simplification: CFS compares
vruntimes (wakeup_preempt_entity: the woken entity behind by more than
wakeup_gran), not the work left; this rule serves the preemptible pools (host
cores, the vhost guests), and the PREEMPT_NONE guests' need_resched below uses
vruntime.  Otherwise it goes to the head of the wait queue; a thread that runs
back to back (a bulk sender between two packets) queues at the tail.

PREEMPT_NONE guests (``CpuPool.preempt_none``; Firecracker's microvm kernels,
profile ``guest_preempt_none``): kernel code is not preempted, so a woken
thread never preempts (it waits at the head of the queue), and a thread inside
a kernel section (``Thread.enter``/``leave``: a send() call, a work item's run)
keeps its CPU from one charge to the next; the CPU is given up only when the
thread sleeps in it (it yields anything but its next charge: waiting for
credit, for ``lock_sock``) or when the section ends with CFS's need_resched set
(``schedule()`` on the return to user space, ``cond_resched()`` between work
items): the running thread has used its slice (latency / runnable threads,
``check_preempt_tick``; checked at the section end, not at the tick) or the
first waiter's vruntime is behind by more than the wake-up granularity
(``check_preempt_wakeup``).  Otherwise the thread keeps the CPU for its next
section.  With ``CpuPool.cfs_vruntime`` (profile ``guest_cfs_vruntime``)
vruntime (``Entity``; every thread nice 0, so CPU time) is kept per vCPU pool
as the kernel keeps it per run queue: a thread that becomes runnable
is placed at no less than the pool's ``min_vruntime`` minus half the latency
(``place_entity``, GENTLE_FAIR_SLEEPERS), and ``min_vruntime`` follows the
smallest vruntime of the running thread and its waiters (``update_min_vruntime``,
updated at section ends).  A vCPU's work items share one entity, its kworker's
(cmwq: one worker runs the items of its CPU one after another; model/guest.py).
A new thread starts at its pool's ``min_vruntime`` (place_entity's initial
placement); the kworkers have slept since boot, so their first wake-up places
them half a latency behind.  Simplifications: no START_DEBIT (a new task's
extra slice); need_resched is evaluated at the section end, not at the
wake-up and the tick.  Without it (profiles fitted before it) vruntime is the
thread's CPU time since the start and ``min_vruntime`` the running thread's.

KVM halt polling (guest pools only, ``halt_poll`` > 0): a vCPU whose guest goes
idle executes HLT, and the host's kvm_vcpu_halt() (virt/kvm/kvm_main.c) polls
for a wake-up before it schedules out; that polling is CPU time of the vCPU
thread on the host (what Firecracker's CI ``cpu_utilization_vcpus_total`` and
``top`` show), not guest work.  The pool tracks each vCPU: when it went idle,
and its adaptive window ``vcpu->halt_poll_ns``.  When a thread takes the vCPU
the gap (``halt_ns``) is closed: ``min(gap, window)`` (clipped to the measured
window) is added to ``polled``, then the window adapts as kvm_vcpu_halt() does:
unchanged if the gap was polled through; reset to 0 after a block longer than
the maximum (grow/shrink_halt_poll_ns with halt_poll_ns_shrink=0, the default
until "KVM: enable halt polling shrink parameter by default" (posted Nov 2023)
made it 2, halving: the hosts with measured CPU rows run 4.14-6.1); else doubled (halt_poll_ns_grow=2, at least
halt_poll_ns_grow_start=10 us), capped at the maximum (x86
KVM_HALT_POLL_NS_DEFAULT=200000).  A streaming guest's short gaps are polled
through; a guest that blocks longer than the maximum (a sender waiting for
credit) stops polling until short gaps grow the window again.  Which vCPU runs
a thread: its previous one if that is idle (select_idle_sibling prefers
prev_cpu), else the one idle the shortest time (a simplification: the kernel
scans the LLC domain for an idle CPU, select_idle_cpu, without that order); a thread that waited for a
busy pool takes the CPU its releaser frees.  Host pools track nothing
(``halt_poll`` = 0).  A pinned guest (scenario ``guest.affinity = "pinned"``)
is one single-CPU pool per vCPU (model/core.py).

Workqueue concurrency management (profile ``guest_cmwq``): a vCPU's worker
pool (``CpuPool.workers``, model/workqueue.py) starts a pending work item only
while none of its workers runs.

Speed: an uncontended ``run`` costs one SimPy event (the timeout), which is
what makes the model stay near the SimPy floor; vCPU tracking adds a few list
operations per run on guest pools only.
"""

from __future__ import annotations

from collections import deque
from heapq import heappush as _heappush

from simpy.events import NORMAL, Timeout

__all__ = ["CpuPool", "Entity", "Thread", "wake_after"]

# CFS tunables (kernel/sched/fair.c, the 4.14-6.5 guests: before EEVDF), each times
# 1 + ilog2(min(CPUs, 8)) (SCHED_TUNABLESCALING_LOG, update_sysctl): CpuPool.cfs_factor
CFS_LATENCY = 6e-3  # sysctl_sched_latency
CFS_MIN_GRAN = 0.75e-3  # sysctl_sched_min_granularity
CFS_WAKEUP_GRAN = 1e-3  # sysctl_sched_wakeup_granularity
MIN_VRUNTIME_ORIGIN = 1.0  # seconds: any origin past half the largest latency (24 ms at 8 vCPUs)
_new_timeout = Timeout.__new__  # Thread.run builds its Timeout without the __init__ call
HALT_POLL_GROW = 2  # virt/kvm/kvm_main.c halt_poll_ns_grow
HALT_POLL_GROW_START = 10e-6  # halt_poll_ns_grow_start = 10000 ns


def wake_after(env, event, delay: float) -> None:
    """Succeed ``event`` ``delay`` seconds from now: a sleeping thread's wake-up latency folded
    into its wake event, which saves the separate timeout (one SimPy event per wake-up).
    Same as ``event.succeed()`` (it sets _ok/_value and schedules) but with a delay; the
    scheduling is ``env.schedule(event, NORMAL, delay)`` inlined (simpy/core.py)."""
    event._ok = True
    event._value = None
    _heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), event))


class _Cpu:
    """What ``_hand_over`` reads off a charge's timeout event (its ``cpu``), for a kept CPU."""

    __slots__ = ("cpu",)

    def __init__(self, cpu):
        self.cpu = cpu


class Entity:
    """A CFS scheduling entity's vruntime (kernel/sched/fair.c ``sched_entity.vruntime``), in
    seconds: every thread is nice 0, so it grows by the CPU time it gets."""

    __slots__ = ("vr",)

    def __init__(self, vr: float = 0.0):
        self.vr = vr


class CpuPool:
    """``size`` identical CPUs; FIFO hand-over when all are busy.  With ``halt_poll`` (seconds)
    > 0 each CPU's idle gaps are tracked and KVM halt polling is accounted (module doc)."""

    __slots__ = ("env", "name", "size", "free", "waiters", "holders", "preemptions", "halt_poll",
                 "idle_since", "poll_window", "polled", "t0", "t1", "busy", "preempt_none", "workers", "cfs_factor",
                 "cfs_vruntime", "min_vr", "kworker")

    def __init__(self, env, name: str, size: int, *, halt_poll: float = 0.0,
                 window: tuple[float, float] = (0.0, float("inf"))):
        self.env, self.name, self.size, self.free = env, name, size, size
        self.waiters: deque = deque()  # (thread, cost, done_event)
        self.holders: dict = {}  # thread -> end of its current charge
        self.preemptions = 0
        self.halt_poll = halt_poll
        # per CPU: when it went idle (None while busy); None for the whole pool = not tracked
        self.idle_since: list | None = [0.0] * size if halt_poll > 0 else None
        self.poll_window = [0.0] * size  # per vCPU: kvm_vcpu->halt_poll_ns (starts at 0), seconds
        self.polled = 0.0  # seconds of halt polling inside the window, over closed idle gaps
        self.busy = 0.0  # seconds of thread work inside the window (threads may move between pools)
        self.t0, self.t1 = window
        self.preempt_none = False  # a PREEMPT_NONE guest: kernel sections run to their end (module doc)
        self.workers = None  # its bound workqueue pool (model/workqueue.py), when cmwq is modelled
        self.cfs_factor = 1.0  # 1 + ilog2(min(guest vCPUs, 8)): CFS tunables' scaling (model/core.py)
        self.cfs_vruntime = False  # vruntime per run queue (profile guest_cfs_vruntime; module doc)
        # cfs_rq->min_vruntime (cfs_vruntime pools), from an origin past half a latency:
        # the run queue has run since boot, so a kworker that slept through the start lags a new app
        self.min_vr = MIN_VRUNTIME_ORIGIN
        self.kworker = Entity()  # the vruntime of this CPU's kworker, shared by its work items

    def _poll(self, a: float, b: float, window: float) -> float:
        """Halt polling of an idle gap [a, b] inside the measured window: [a, a + min(b - a, window)]."""
        e = a + window
        if b < e:
            e = b
        lo = a if a > self.t0 else self.t0
        hi = e if e < self.t1 else self.t1
        return hi - lo if hi > lo else 0.0

    def _take(self, thread) -> int:
        """A free CPU is taken by ``thread``: its previous CPU if idle, else the one idle the
        shortest time; closes that CPU's idle gap and returns the CPU.

        Closing the gap [a, b] (idle since ``a``, woken at ``b``): account its polling, then
        adapt the window (kvm_vcpu_halt: grow_halt_poll_ns / shrink_halt_poll_ns, see the module
        doc).  The polling is ``_poll(a, b, window)``, inlined here (this runs on every uncontended
        guest charge)."""
        idle = self.idle_since
        b = self.env._now
        cpu = thread.cpu
        if cpu < 0 or cpu >= len(idle) or idle[cpu] is None:
            best = None
            for i, t in enumerate(idle):
                if t is not None and (best is None or t > best):
                    best, cpu = t, i
        a = idle[cpu]
        idle[cpu] = None
        thread.cpu = cpu
        window = self.poll_window[cpu]
        e = a + window  # _poll(a, b, window)
        if b < e:
            e = b
        lo = a if a > self.t0 else self.t0
        hi = e if e < self.t1 else self.t1
        if hi > lo:
            self.polled += hi - lo
        gap = b - a
        if gap <= window:
            return cpu  # polled through: keep the window
        top = self.halt_poll
        if window and gap > top:
            self.poll_window[cpu] = 0.0  # a long block: halt_poll_ns_shrink=0 resets polling
        elif window < top and gap < top:
            grown = window * HALT_POLL_GROW
            self.poll_window[cpu] = min(top, max(grown, HALT_POLL_GROW_START))
        return cpu

    def poll_time(self, now: float | None = None) -> float:
        """Seconds of halt polling inside the window up to ``now`` (open idle gaps included)."""
        now = self.env.now if now is None else now
        total = self.polled
        if self.idle_since is not None:
            for cpu, t in enumerate(self.idle_since):
                if t is not None:
                    total += self._poll(t, now, self.poll_window[cpu])
        return total


class Thread:
    """A schedulable thread: accumulates busy time within the measured window."""

    __slots__ = ("env", "pool", "name", "side", "busy", "busy_total", "se", "t0", "t1", "runs", "debt", "_release", "last_end",
                 "delay", "cpu", "owed", "owed_at", "section", "held", "hold_gen", "slice_start")

    def __init__(self, env, pool: CpuPool, name: str, side: str, window: tuple[float, float]):
        self.env, self.pool, self.name, self.side = env, pool, name, side
        self.t0, self.t1 = window
        self.busy = 0.0  # seconds of CPU inside the measured window
        self.busy_total = 0.0  # seconds of CPU over the whole run
        # a new task starts at its run queue's min_vruntime (place_entity, initial); a work
        # item's vruntime is its vCPU's kworker's (model/guest.py)
        self.se = Entity(pool.min_vr)
        self.runs = 0
        self.debt = 0.0  # CPU owed on the critical path (an event loop's epoll round), paid at the next run
        self.owed = 0.0  # CPU spent off the critical path since ``owed_at`` (see ``owe``)
        self.owed_at = 0.0
        self._release = self._release_cpu
        self.last_end = 0.0  # when this thread's last CPU charge ends
        self.delay = 0.0  # time it was preempted for, served at its next charge
        # the CPU it last ran on (tracked pools): an affinity hint only, as one Thread object may
        # carry two charges at once (an app's sender and receiver); each charge's CPU rides on
        # its timeout event (``cpu``) to the release
        self.cpu = -1
        self.section = False  # inside a non-preemptible kernel section (PREEMPT_NONE pools)
        self.held = None  # the CPU it keeps between two charges of its section (-1: untracked)
        self.hold_gen = 0
        self.slice_start = 0.0  # when it last took a CPU from another thread (CFS slice)

    def enter(self) -> None:
        """Begin a kernel section that, on a PREEMPT_NONE pool, keeps its CPU between charges."""
        if self.pool.preempt_none:
            self.section = True

    def leave(self) -> None:
        """End the section: the return to user space or ``cond_resched()`` switches only if
        need_resched is set (:meth:`_need_resched`); then the CPU it holds goes to the first
        waiter, else it keeps it for its next charge in this instant."""
        self.section = False
        if self.held is not None:
            pool = self.pool
            if pool.cfs_vruntime:  # update_min_vruntime: the running thread's or a waiter's, the least
                low = self.se.vr
                for waiter, _, _ in pool.waiters:
                    if waiter.se.vr < low:
                        low = waiter.se.vr
                if low > pool.min_vr:
                    pool.min_vr = low
            if pool.waiters and not self._need_resched():
                self.hold_gen += 1
                self._drop_at_end_of_instant()
                return
            self._drop(self.hold_gen)

    def _drop_at_end_of_instant(self) -> None:
        """Give the kept CPU up at the end of this instant unless a charge of this thread takes
        it first (which bumps ``hold_gen``): a thread that goes to sleep instead frees it."""
        env = self.env
        chk = env.event()
        chk.gen = self.hold_gen
        chk.callbacks.append(self._drop_event)
        chk._ok, chk._value = True, None
        env.schedule(chk)  # same instant, after the thread's next run() would have taken it

    def _need_resched(self) -> bool:
        """CFS's TIF_NEED_RESCHED at a section end: the slice used up (check_preempt_tick,
        approximated at the section end), or the first waiter's vruntime (placed when it became
        runnable: ``run``) behind by more than the wake-up granularity (check_preempt_wakeup)."""
        pool = self.pool
        f = pool.cfs_factor
        latency = CFS_LATENCY * f
        nr = 1 + len(pool.waiters)
        slice_ = max(latency / nr, CFS_MIN_GRAN * f)
        if self.env._now - self.slice_start >= slice_:
            return True
        waiter = pool.waiters[0][0]
        if pool.cfs_vruntime:
            return self.se.vr - waiter.se.vr > CFS_WAKEUP_GRAN * f
        # profiles fitted before guest_cfs_vruntime: CPU time since the start as vruntime, the
        # running thread's as min_vruntime
        mine = self.busy_total
        theirs = max(waiter.busy_total, mine - latency / 2)
        return mine - theirs > CFS_WAKEUP_GRAN * f

    def give_back(self) -> None:
        """Give up now the CPU kept since the last charge (a work item about to move to another
        vCPU's pool: the kept CPU belongs to the pool it ran on)."""
        self._drop(self.hold_gen)

    def _drop(self, gen) -> None:
        """Give up the kept CPU, unless the section has taken it again since (``gen``)."""
        if self.held is None or gen != self.hold_gen:
            return
        ev = _Cpu(self.held)
        self.held = None
        self._hand_over(ev)

    def _drop_event(self, event) -> None:
        self._drop(event.gen)

    def _release_cpu(self, event=None) -> None:
        """A charge's timeout fired.  Inside a section the CPU is kept for the thread's next
        charge in this instant (the process resumes after this callback); a check at the end of
        the instant gives it up if none came (the thread went to sleep)."""
        if self.section:  # PREEMPT_NONE: no schedule() inside the section; kept unless it sleeps
            self.hold_gen += 1
            self.held = getattr(event, "cpu", -1)
            self._drop_at_end_of_instant()
            return
        self._hand_over(event)

    def _hand_over(self, event=None) -> None:
        """Hand a charge's CPU (``event.cpu`` on tracked pools) to the first
        waiter, or free it (a tracked CPU goes idle now)."""
        pool = self.pool
        pool.holders.pop(self, None)
        if pool.waiters:
            thread, cost, done = pool.waiters.popleft()
            # hand-over: the waiter runs on the CPU just freed (no gap)
            thread._start(cost, done, getattr(event, "cpu", -1))
        else:
            pool.free += 1
            idle = pool.idle_since
            if idle is not None:
                cpu = getattr(event, "cpu", -1)
                if cpu >= 0:
                    idle[cpu] = pool.env._now

    def _account(self, start: float, cost: float) -> None:
        self.runs += 1
        self._busy(start, cost)

    def _busy(self, start: float, cost: float) -> None:
        """``cost`` seconds of CPU from ``start``: its total, its vruntime, and its part inside the window."""
        self.busy_total += cost
        self.se.vr += cost
        lo = start if start > self.t0 else self.t0
        end = start + cost
        hi = end if end < self.t1 else self.t1
        if hi > lo:
            self.busy += hi - lo
            self.pool.busy += hi - lo

    def owe(self, cost: float) -> None:
        """CPU this thread spends from now on, off its critical path: a kick's VM exit after
        the device has been notified (the vCPU is stalled in the exit while the backend already
        runs), a signal after the used ring was published.  It delays the thread's next charge
        only by what of it is left when that charge starts: time the thread then spent idle
        paid for it (still counted as its CPU time).  Simplification: the vCPU itself is not
        held, so another thread may run on it meanwhile."""
        if cost:
            if not self.owed:
                self.owed_at = self.env._now
            self.owed += cost

    def _settle(self, now: float) -> float:
        """Account what of ``owed`` the idle time since ``owed_at`` covered; return the rest."""
        owed, start = self.owed, self.owed_at
        self.owed = 0.0
        paid = now - start
        if paid > owed:
            paid = owed
        if paid > 0:
            self._busy(start, paid)  # CPU time, but no run of its own
            return owed - paid
        return owed

    def run(self, cost: float, lock=None, gap: float = 0.0):
        """An event that fires after this thread has had ``cost`` seconds of CPU.  ``lock``: a
        socket end (model/socket.End) whose lock_sock the charge holds while it runs, but for
        ``gap`` at each end (the syscall's entry and exit and the app's own loop): its
        ``lock_start``/``lock_end`` are set when the charge starts (a charge waiting for a CPU
        holds nothing)."""
        if self.debt:
            cost += self.debt
            self.debt = 0.0
        if self.owed:
            cost += self._settle(self.env._now)
        pool = self.pool
        env = self.env
        if pool.cfs_vruntime:  # place_entity: runnable again, no more than half the latency behind
            floor = pool.min_vr - CFS_LATENCY * pool.cfs_factor / 2
            if self.se.vr < floor:
                self.se.vr = floor
        if self.held is not None:  # its section goes on on the CPU it kept
            cpu = self.held
            self.held = None
            self.hold_gen += 1
            ev = self._charge(cost, lock, gap, cpu)
            ev.callbacks.append(self._release)
            return ev
        if pool.free:  # the hot path: inlined accounting, one Timeout
            pool.free -= 1
            start = env._now
            self.slice_start = start
            self.busy_total += cost
            self.se.vr += cost
            self.runs += 1
            end = start + cost
            t0, t1 = self.t0, self.t1
            if end > t0 and start < t1:
                inc = (end if end < t1 else t1) - (start if start > t0 else t0)
                self.busy += inc
                pool.busy += inc
            wait = cost
            if self.delay:
                wait += self.delay
                self.delay = 0.0
            end = start + wait  # the charge's end, preemption included
            self.last_end = end
            if lock is not None:
                lock.lock_start, lock.lock_end, lock.lock_pool = start + gap, end - gap, pool
            pool.holders[self] = end
            # Timeout(env, wait) with Timeout.__init__ and env.schedule inlined (simpy/events.py,
            # simpy/core.py): the same event, scheduled at the same time with the next event id
            if wait < 0:
                raise ValueError(f"Negative delay {wait}")
            ev = _new_timeout(Timeout)
            ev.env = env
            ev.callbacks = [self._release]
            ev._value = None
            ev._delay = wait
            ev._ok = True
            _heappush(env._queue, (end, NORMAL, next(env._eid), ev))
            if pool.idle_since is not None:  # tracked (guest) pools only: the CPU rides on the event
                ev.cpu = pool._take(self)
            return ev
        now = env._now
        woke = now > self.last_end  # it slept since its last charge
        if woke and not pool.preempt_none:  # wake-up preemption (see the module doc)
            holders = pool.holders
            victim = max(holders, key=holders.__getitem__) if holders else None
            if victim is not None and victim is not self and holders[victim] - now > cost:
                victim.delay += cost
                holders[victim] += cost
                pool.preemptions += 1
                self._account(now, cost)
                self.last_end = now + cost
                if lock is not None:
                    lock.lock_start, lock.lock_end, lock.lock_pool = now + gap, now + cost - gap, pool
                return Timeout(env, cost)  # on the victim's CPU: no slot taken, none released
        done = env.event()
        done.lock = (lock, gap) if lock is not None else None  # held from _start on
        if woke:
            pool.waiters.appendleft((self, cost, done))  # head of the queue
        else:
            pool.waiters.append((self, cost, done))
        return done

    def _charge(self, cost: float, lock, gap: float, cpu: int):
        """Start a charge of ``cost`` on ``cpu`` now (its preemption delay served): the timeout
        that ends it, with no callback yet.  The hot path in ``run`` inlines the same steps."""
        now = self.env.now
        self._account(now, cost)
        wait = cost + self.delay
        self.delay = 0.0
        self.last_end = now + wait
        self.pool.holders[self] = now + wait
        if lock is not None:
            lock.lock_start, lock.lock_end, lock.lock_pool = now + gap, now + wait - gap, self.pool
        t = self.env.timeout(wait)
        t.cpu = cpu
        if cpu >= 0:
            self.cpu = cpu
        return t

    def _start(self, cost: float, done, cpu: int = -1) -> None:
        self.slice_start = self.env._now
        lock, gap = done.lock if done.lock is not None else (None, 0.0)
        t = self._charge(cost, lock, gap, cpu)

        def finish(ev, done=done):
            if self.section:  # the process resumes first: its next run() takes the kept CPU
                done.succeed()
                self._release_cpu(ev)
                return
            self._release_cpu(ev)
            done.succeed()

        t.callbacks.append(finish)
