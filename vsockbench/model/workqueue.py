"""Workqueue concurrency management (kernel/workqueue.c; profile ``guest_cmwq``).

A guest vCPU's bound workqueue pool runs the vsock driver's work items
(``send_pkt_work``, ``tx_work``, ``rx_work``: ``virtio_vsock_workqueue`` is a
per-CPU workqueue) under concurrency management: it starts a pending item only
while none of its workers runs, so on a pinned vCPU ``send_pkt_work`` and
``tx_work`` queued behind a running ``rx_work`` wait for its run to end or to
sleep (model/guest.py, model/guest_rx.py).  Simplification: modelled on single-vCPU pools only
(pinned vCPUs, 1-vCPU guests; model/core.py): a free multi-vCPU pool does not
track which vCPU runs what.
"""

from __future__ import annotations

from collections import deque

__all__ = ["WorkerPool"]


class WorkerPool:
    """A CPU's bound workqueue worker pool under concurrency management (kernel/workqueue.c):
    ``running`` is ``pool->nr_running``.  A work item starts at once only when no worker runs
    (``kick_pool`` wakes an idle worker only if ``need_more_worker()``: work pending and
    nr_running == 0); otherwise it waits FIFO on the worklist until the running worker finishes
    its item (``worker_thread`` takes the next one) or sleeps (``wq_worker_sleeping`` drops
    nr_running and kicks the pool).  A worker that wakes up runs again at once
    (``wq_worker_running``), beside whichever worker took over."""

    __slots__ = ("env", "running", "worklist")

    def __init__(self, env):
        self.env = env
        self.running = 0
        self.worklist: deque = deque()

    def start(self):
        """A work item of this pool begins: None if it runs now, else an event that fires when
        a worker takes it (the item then counts as running)."""
        if not self.running:
            self.running = 1
            return None
        ev = self.env.event()
        self.worklist.append(ev)
        return ev

    def stop(self) -> None:
        """The running item ended or its worker went to sleep: the next pending item starts."""
        self.running -= 1
        if not self.running and self.worklist:
            self.running = 1
            self.worklist.popleft().succeed()

    def woke(self) -> None:
        """A worker that slept in its item runs again (wq_worker_running)."""
        self.running += 1
