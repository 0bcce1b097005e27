"""The guest driver: one :class:`GuestQueue` per virtqueue pair of a device; its
device-to-guest half (interrupts, the RX ring, rx_work) is
:class:`~vsockbench.model.guest_rx.RxSide`, which it inherits.

Mirrors net/vmw_vsock/virtio_transport.c:

* ``xmit`` is ``virtio_transport_send_pkt``: the fast path (queue empty and
  ``tx_lock`` free -> the sender adds to the TX ring itself, one kick per
  packet, efcd71af38be) or append to ``send_pkt_queue`` + ``queue_work``.
* ``_send_pkt_work`` drains ``send_pkt_queue`` in FIFO order, one kick per
  batch, stops when the ring is full (``virtio_transport_send_pkt_work``).
  Each run costs ``guest_wq_run_ns`` besides its packets: the sender's
  queue_work() wakes the kworker and the vCPU switches to it and back - what
  the fast path saves, with the hop's latency ``guest_wq_latency_ns``.
* A kick's VM exit stalls the vCPU after KVM has signalled the ioeventfd, so
  the backend already runs: send_pkt_work's kick is charged after the
  notification, holding the vCPU (nothing else runs on it during the exit;
  the adds, the notification and the exit are one section on every guest);
  a sender's kick (fast path, control packets) is owed (``Thread.owe``), not
  put before the notification - simplification: a sender that sleeps right
  after pays it with its idle time, though another thread may have used the
  vCPU meanwhile (until 2026-11-28, twentieth session, send_pkt_work's kick
  was owed too, and a 1-vCPU guest streaming 1 KiB g2h did 1.24 CPUs of work).
* ``_tx_work`` reclaims used TX buffers on the TX interrupt and requeues
  send_pkt_work (``virtio_transport_tx_work``), a kworker on the interrupt
  vCPU that competes for it.
* ``_rx_work`` runs on the RX interrupt with callbacks disabled until the ring
  is empty (no budget), delivers each buffer to its socket
  (``virtio_transport_recv_pkt``, under the socket's ``lock_sock``: while an
  app pinned to another vCPU owns it, rx_work sleeps and the packets behind it
  wait), and refills only below half (``virtio_vsock_rx_fill``;
  ``rx_buf_nr < rx_buf_max_nr / 2``).

Notification suppression (EVENT_IDX): a kick only when the backend has
notifications enabled (it disables them while it runs), an interrupt only
when the guest has callbacks enabled (disabled while rx_work/tx_work run).
A device without it (profile ``device_event_idx = false``: Firecracker's vsock
before PR #5872, 2026) gets a kick after every add and every RX refill
(``virtqueue_kick_prepare`` is true when the device never sets NO_NOTIFY) and
interrupts after every used batch (it ignores the guest's NO_INTERRUPT flag):
each extra interrupt costs the guest ``guest_irq_ns`` (``vring_interrupt`` ->
``queue_work`` on an already queued item) and the backend ``backend_signal_ns``.
CPU placement (pinned guests, ``guest.affinity = "pinned"``): each queue pair's
interrupt is taken on one vCPU (a virtio-mmio device has one IRQ line, a
virtio-pci one MSI-X vector per queue, each with a single-CPU effective
affinity), by default the guest's interrupt lines in device order spread over
its vCPUs: queue pair ``i`` of a device behind ``k`` earlier queue pairs on vCPU
``(k + i) % vcpus`` - the matrix allocator of Linux >= 4.15 gives each new
vector the CPU with the most free ones (``matrix_find_best_cpu``, via
``assign_irq_vector_any_locked``), and managed MSI-X affinity spreads a
device's queues (``irq_create_affinity_masks``).  Scenario ``irq_vcpu`` moves a
device's lines (``/proc/irq/N/smp_affinity``).  A 4.14 guest puts every line on
CPU 0: a KVM guest without interrupt remapping runs x2apic in physical mode
(``try_to_enable_x2apic`` sets ``x2apic_phys``), whose
``default_vector_allocation_domain`` gives a vector one CPU, the first online one
of the line's mask that has a free vector (``__assign_irq_vector``).
``virtio_vsock_workqueue`` is a bound workqueue, so rx_work and tx_work,
queued from that interrupt, run there.
send_pkt_work runs on the CPU that queued it (__queue_work: the local CPU,
or the CPU where the item is already pending or running): a sender's vCPU,
or the IRQ vCPU when tx_work requeues it.
Cross-vCPU packets (pinned guests): a packet that rx_work delivers, or that
send_pkt_work adds to the ring, on a vCPU other than its socket's
application's costs that work ``guest_cross_vcpu_pkt_ns`` more: the socket's
receive state (``rx_lock``, ``rx_queue``, counters, wait queue) or the
sender's packet and ``send_pkt_queue`` come from the other vCPU's cache, and a
sleeping reader is woken with a reschedule IPI (``sk_data_ready`` ->
``try_to_wake_up`` -> ``smp_send_reschedule``: a VM exit on the waking vCPU
without IPI virtualisation).  Simplification: one estimate per packet, charged
where the packet is handled (the reader's side of the transfer, and tx_work
freeing the sender's packet, are in it); the app's vCPU pays nothing extra.
A free (unpinned) guest has one pool: its apps follow the driver's work
(wake_affine), so nothing is cross-vCPU there.
Workqueue concurrency (profile ``guest_cmwq``; kernel/workqueue.c): the three
work items of a vCPU share its worker pool (``CpuPool.workers``), which starts
one only while no worker runs: a run of send_pkt_work, tx_work or rx_work
waits for the running item to end its run or to sleep (rx_work in
``lock_sock``); a do/while round of rx_work is the same run.
``tx_lock`` (profile ``guest_tx_lock``): send_pkt_work's adds and kick and tx_work's reclaim
run under the mutex; one that finds it held by the other on another vCPU spins until it is
released (``mutex_optimistic_spin``: the owner is running), CPU time on its own vCPU.  Each holder
publishes its window (``_LockWindow``) when its charge starts, and the one that comes second
spins; the fast path's ``mutex_trylock`` fails while tx_work holds it on another vCPU.
Simplifications: a waiter's spin is priced when it asks for the lock, once it has its vCPU
(and is not extended if the holder is delayed meanwhile); the fast path's own add holds nothing.
send_pkt_work adds only once its kworker runs (profile ``guest_adds_on_vcpu``): queued by a
sender on a PREEMPT_NONE vCPU, it waits for that sender's send() to end or sleep, and the
device sees nothing before (a zero charge takes the vCPU where no switch-in cost does).
Simplification: ``queued_replies`` throttling is not modelled (it only
matters under connection storms larger than the ring).
"""

from __future__ import annotations

from collections import deque

from .copycost import InFlight
from .cpu import wake_after
from .guest_rx import RxSide

__all__ = ["GuestQueue"]


class _LockWindow:
    """When one holder has ``tx_lock``: ``lock_start`` + ``lead`` to ``lock_end`` + ``tail``, on
    ``lock_pool`` (set by Thread.run's ``lock`` at the charge's start, as a socket's lock_sock).
    ``lead``: the charge's part before mutex_lock (tx_work's interrupt); ``tail``: the kick's exit
    after the charge, before mutex_unlock."""

    __slots__ = ("lock_start", "lock_end", "lock_pool", "lead", "tail")

    def __init__(self):
        self.lock_start = self.lock_end = self.lead = self.tail = 0.0
        self.lock_pool = None

    def left(self, pool, now: float) -> float:
        """How long a thread of ``pool`` asking now spins: until the holder releases, if it
        holds the lock now on another CPU (another pool, or another CPU of a larger pool)."""
        holder = self.lock_pool
        if holder is None or (holder is pool and pool.size == 1):
            return 0.0
        end = self.lock_end + self.tail
        if self.lock_start + self.lead <= now < end:
            return end - now
        return 0.0


class GuestQueue(RxSide):
    """One TX/RX virtqueue pair of a guest vsock device, with its work items."""

    def __init__(self, model, dev, index: int, irq_vcpu: int | None = None):
        self.model, self.dev, self.index = model, dev, index
        self.cid = dev.cid
        prof = self.prof = dev.resolved
        env = self.env = model.env
        self.slots = prof.slots_per_pkt
        self.ring = prof.ring_size  # TX ring slots (the zerocopy check in model/apps.py)
        self.rx_ring = prof.rx_buffers  # RX buffers a full ring holds (Profile.rx_buffers)
        self.suppress = prof.device_event_idx  # False: every kick and interrupt goes through
        # per-operation costs in seconds, constant for the run (the profile is frozen)
        self.fast_path = prof.guest_tx_fast_path
        self.kick_s = prof.guest_kick_ns * 1e-9
        self.signal_s = prof.backend_signal_ns * 1e-9
        self.irq_s = prof.guest_irq_ns * 1e-9  # an interrupt and the kworker run it queues
        self.wq_s = prof.guest_wq_latency_ns * 1e-9
        # one send_pkt_work run queued by a sender: kworker wake-up + switches (rx_work and
        # tx_work runs, queued by the interrupt, are in guest_irq_ns with the interrupt itself)
        self.run_s = prof.guest_wq_run_ns * 1e-9
        self.txq_s = prof.guest_txq_per_pkt_ns * 1e-9
        self.kick_after_adds = prof.guest_kick_after_adds
        self.adds_on_vcpu = prof.guest_adds_on_vcpu
        # tx_lock's holders (guest_tx_lock): send_pkt_work's adds and tx_work's reclaim
        self.tx_lock = prof.guest_tx_lock
        self.lock_send, self.lock_tx = _LockWindow(), _LockWindow()
        self.spins = 0  # tx_lock waits that spun (either side)
        self.spin_s = 0.0  # and their CPU time, seconds
        self.xcpu_s = prof.guest_cross_vcpu_pkt_ns * 1e-9  # a packet handled off its app's vCPU
        self.jitter = model.jitter
        # record_packet is a no-op without packet records (run.packets = "none"): skip the call
        self.record = model.record_packet if model.packet_mode != "none" else None
        # TX side
        self.sendq: deque = deque()  # send_pkt_queue (unbounded sk_buff_head)
        self.txring: deque = deque()  # packets available to the device
        self.tx_free = prof.ring_size  # free descriptors
        self.tx_used = deque()  # slot counts used by the device, awaiting reclaim
        self.tx_kick_enabled = True  # the device wants a kick (vhost_enable_notify)
        self.tx_cb_enabled = True  # the driver wants the TX interrupt
        self.send_work_running = False
        # RX side: the driver posts the whole ring at probe (virtio_vsock_rx_fill)
        self.rx_avail = self.rx_ring
        self.rx_used: deque = deque()
        self.rx_cb_enabled = True
        # the device asks for a refill's kick when it ran out of buffers or had nothing left to send
        # (vhost_enable_notify on the RX vq: backend.py)
        self.rx_kick_enabled = False
        self.backend = None  # set by the topology builder
        # accounting
        self.held = 0  # payload bytes a worker has taken off a ring and not yet delivered
        self.footprint = InFlight()  # payload sent by an app, not yet read: the copies' footprint (copycost.py)
        self.packets = 0
        self.bytes = 0
        self.kicks = 0  # guest -> device notifications (VM exits)
        self.irqs = 0  # device -> guest interrupts taken
        # packets the driver's work handled on a vCPU other than their app's: [rx_work, send_pkt_work]
        self.cross_vcpu = [0, 0]
        name = f"{dev.cid}.{index}"
        # pinned guests: this pair's interrupt vCPU (the model's default spread: core._build_devices)
        self.irq_vcpu = (index if irq_vcpu is None else irq_vcpu) % len(model.vcpu_pools)
        self.t_send = model.thread("guest", f"g:send_pkt_work-{name}", self.irq_vcpu)
        self.t_tx = model.thread("guest", f"g:tx_work-{name}", self.irq_vcpu)
        self.t_rx = model.thread("guest", f"g:rx_work-{name}", self.irq_vcpu)
        for item in (self.t_send, self.t_tx, self.t_rx):  # run by their vCPU's kworker (one vruntime)
            item.se = item.pool.kworker
        # a hard interrupt on the interrupt vCPU (profile guest_irq_preempts): its CPU is accounted
        # here; the thread it preempts is delayed by as much
        self.irq_preempts = prof.guest_irq_preempts
        self.t_irq = model.thread("guest", f"g:irq-{name}", self.irq_vcpu) if self.irq_preempts else None
        self._irq_until = 0.0  # the interrupt being handled ends then; one arriving before merges
        self.merged_irqs = 0
        self._tx_irq_paid = False  # tx_work's interrupt came with an RX one (signal_used)
        self.pinned = model.pinned
        self._send_ev = self._rx_ev = None
        self._send_queued = self._rx_queued = False
        env.process(self._send_pkt_work())
        env.process(self._rx_work())

    # ------------------------------------------------------------------ TX
    def fast_path_open(self, nbytes: int, pool=None) -> bool:
        """Would virtio_transport_send_pkt() take the fast path now: send_pkt_queue empty, the
        work item not holding tx_lock, room on the ring (virtio_transport_send_skb_fast_path).
        ``pool``: the sender's vCPU; tx_work holding tx_lock there cannot be running (its
        critical section has no preemption point), so only a holder elsewhere fails the trylock."""
        return (self.fast_path and not self.sendq and not self.send_work_running
                and self.tx_free >= (self.slots if nbytes else 1)
                and not (self.tx_lock and self.lock_tx.left(pool, self.env._now)))  # mutex_trylock

    def xmit(self, pkt, sender=None, prepaid: bool = False) -> float:
        """virtio_transport_send_pkt() called by thread ``sender``; returns the CPU the caller's
        vCPU spends after the device was notified (the kick's VM exit; 0 if none), which the
        caller owes off its critical path (Thread.owe).  ``prepaid``: the caller's last charge
        included the fast path's virtqueue_add_sgs (``fast_path_open`` was true when it began)."""
        # the fast path exists since efcd71af38be (Sep 2024, ~6.12); older guests (4.14, 5.10: the
        # Firecracker CI) always queue to send_pkt_queue, so one send_pkt_work serialises every
        # connection's TX (profile guest_tx_fast_path, set per guest kernel by vsockbench.kernels)
        if self.fast_path_open(pkt.len, None if sender is None else sender.pool):
            if not prepaid and sender is not None:  # control packets: the add is paid on the way
                sender.debt += self.txq_s
            self._add_tx(pkt)  # fast path in the sender's context
            return self._maybe_kick()
        # (a prepaid add that finds the queue busy after all is queued; its add is then paid
        # twice - a rare race: the sender's charge would have ended in mutex_trylock failing)
        self.sendq.append(pkt)
        self._queue_send_work(sender)
        return 0.0

    def _slots(self, pkt) -> int:
        return self.slots if pkt.len else 1

    def _add_tx(self, pkt) -> None:
        n = pkt.len
        self.tx_free -= self.slots if n else 1  # _slots(pkt)
        self.txring.append(pkt)
        self.packets += 1
        self.bytes += n
        if self.record is not None:
            self.record(pkt, self)

    def _maybe_kick(self) -> float:
        if self.tx_kick_enabled or not self.suppress:
            self.tx_kick_enabled = False  # EVENT_IDX: one kick until the device re-arms
            self.kicks += 1
            self.backend.notify_tx(self)
            return self.kick_s
        return 0.0

    def _wq_delay(self) -> float:
        """queue_work() -> the work item runs: the workqueue hop (Leonardi 2024: ~0.4 us mean)."""
        return self.wq_s * self.jitter()

    def _queue_send_work(self, by=None) -> None:
        """queue_work(send_pkt_work) from thread ``by``; an idle item moves to ``by``'s vCPU."""
        if not self._send_queued:
            if self.pinned and by is not None and not self.send_work_running:
                t = self.t_send
                if t.held is not None and t.pool is not by.pool:
                    t.give_back()  # its last run's vCPU, still kept this instant, goes back now
                t.pool = by.pool  # bound workqueue: runs on the queuing CPU
                t.se = by.pool.kworker  # by that CPU's kworker
            self._send_queued = True
            ev = self._send_ev
            if ev is not None:
                self._send_ev = None
                wake_after(self.env, ev, self._wq_delay())

    def _send_pkt_work(self):
        """virtio_transport_send_pkt_work: take packets off send_pkt_queue while the ring has
        room (virtqueue_add_sgs each), then one kick.  The kworker's switch-in comes first (on
        the path); with ``guest_adds_on_vcpu`` and no such cost (``guest_wq_run_ns`` = 0) a zero
        charge takes the vCPU first, so the adds wait for the kworker to run.  With
        ``guest_tx_lock`` the adds and the kick hold tx_lock (``_spin`` first if tx_work holds it
        on another vCPU).  With ``guest_kick_after_adds`` (every estimate and every shipped profile
        since 2026-11-27, sixteenth session) the adds are one charge and the device is notified at its
        end, the kick's exit charged after (holding the vCPU; owed until 2026-11-28); simplification: the ring shows the batch's packets from
        the charge's start, so a VMM pass already running may take some early.  Without it (a
        profile file that says false: the order every profile was fitted with before the fifteenth
        session) the device is notified at the run's start and the adds and the kick are charged
        after, as if it saw the batch at once."""
        env = self.env
        per_pkt = self.txq_s
        run_s = self.run_s
        xcpu = self.xcpu_s
        while True:
            if not self._send_queued:
                self.t_send.leave()
                self._send_ev = env.event()
                yield self._send_ev
                self.t_send.enter()  # one run of the work item (PREEMPT_NONE guests: not preempted)
            self._send_queued = False
            self.send_work_running = True
            workers = self.t_send.pool.workers  # this run's vCPU's worklist (guest_cmwq)
            if workers is not None:
                wait = workers.start()
                if wait is not None:  # behind the work item running there
                    yield wait
            if run_s:  # the sender's queue_work woke the kworker; the vCPU switches to it
                yield self.t_send.run(run_s)
            elif self.adds_on_vcpu and self.t_send.held is None:
                # no switch-in cost to pay, but the kworker still adds only once it runs: behind a
                # sender in send() on a PREEMPT_NONE vCPU, the device sees nothing until it ends
                yield self.t_send.run(0.0)
            pool = self.t_send.pool  # this run's vCPU (the item moves while idle: _queue_send_work)
            lock = None
            if self.tx_lock:  # mutex_lock(&vsock->tx_lock) before the loop
                lock = self.lock_send
                if self.lock_tx.left(pool, env._now):
                    yield from self._spin(self.t_send, pool, self.lock_tx)
            batch = remote = 0
            while self.sendq and self.tx_free >= self._slots(self.sendq[0]):
                pkt = self.sendq.popleft()
                self._add_tx(pkt)
                batch += 1
                if pkt.conn.g_app_pool not in (pool, None):  # sent by an app on another vCPU
                    remote += 1
            if batch:
                self.cross_vcpu[1] += remote
                if self.kick_after_adds:  # the adds, then one kick (virtio_transport_send_pkt_work)
                    if lock is not None:  # the kick's exit comes before mutex_unlock
                        lock.tail = self.kick_s if (self.tx_kick_enabled or not self.suppress) else 0.0
                    # no scheduling point between the adds, the notification and the exit: the
                    # vCPU goes from the adds into the exit (a section, on preemptible pools too)
                    t_send = self.t_send
                    in_section = t_send.section
                    t_send.section = True
                    yield t_send.run(per_pkt * batch + xcpu * remote, lock)
                    kick = self._maybe_kick()
                    if lock is not None:
                        lock.tail = kick
                    if kick:  # the exit, after the device was notified: the vCPU is stalled in it
                        exit_ = t_send.run(kick)  # on the CPU the adds kept
                        t_send.section = in_section
                        yield exit_
                    else:
                        t_send.section = in_section
                        if not in_section:
                            t_send.give_back()
                else:
                    kick = self._maybe_kick()
                    yield self.t_send.run(per_pkt * batch + kick + xcpu * remote)
            if workers is not None:
                workers.stop()
            self.send_work_running = False
            # packets queued while we ran: the sender saw send_work_running and queued work

    def _spin(self, thread, pool, window):
        """mutex_lock on tx_lock held by the other work item on another vCPU: spin until it is
        released (mutex_optimistic_spin), on ``thread``'s vCPU, which it takes first."""
        if thread.held is None:  # not yet on its vCPU: the spin starts when it gets it
            yield thread.run(0.0)
        left = self._lock_wait(window, pool)
        if left:
            yield thread.run(left)

    def _lock_wait(self, window, pool) -> float:
        """How long a mutex_lock on tx_lock asked now from ``pool`` spins for ``window``'s holder
        (0 if free), counted in ``spins`` / ``spin_s``."""
        left = window.left(pool, self.env._now)
        if left:
            self.spins += 1
            self.spin_s += left
        return left

    # device side hands TX packets over here
    def pop_tx(self):
        pkt = self.txring.popleft()
        self.tx_used.append(self.slots if pkt.len else 1)  # _slots(pkt)
        return pkt

    def signal_tx(self) -> float:
        """vhost_signal() for the TX vq; returns the backend's cost (0 if suppressed)."""
        if self.tx_cb_enabled:
            self.tx_cb_enabled = False
            self.irqs += 1
            self.env.timeout(self._wq_delay()).callbacks.append(self._tx_work)
            return self.signal_s
        if not self.suppress:
            return self._unsuppressed_irq(self.t_tx)
        return 0.0

    def _tx_work(self, _event) -> None:
        """virtio_transport_tx_work, queued by the TX interrupt on the interrupt vCPU's bound
        workqueue: the interrupt, then virtqueue_get_buf + consume_skb_sent for every used
        buffer, on that vCPU (it competes with whatever runs there), then requeue
        send_pkt_work (``_tx_reclaim``, a callback on the charge: no process of its own).  With
        a worker pool (guest_cmwq) the run starts when a worker takes it."""
        workers = self.t_tx.pool.workers
        if workers is not None:
            wait = workers.start()
            if wait is not None:
                wait.callbacks.append(self._tx_run)
                return
        self._tx_run(None)

    def _tx_run(self, _event) -> None:
        irq = 0.0 if self._tx_irq_paid else self.irq_s  # one vm_interrupt served both queues
        self._tx_irq_paid = False
        if self.tx_lock:  # the interrupt on the vCPU, then mutex_lock (_tx_locked)
            self.t_tx.enter()  # the vCPU is kept between the two charges (a kworker's run)
            self.t_tx.run(irq).callbacks.append(self._tx_locked)
            return
        ev = self.t_tx.run(irq + len(self.tx_used) * self.txq_s)
        ev.callbacks.append(self._tx_reclaim)

    def _tx_locked(self, _event) -> None:
        """tx_work's mutex_lock once it runs on its vCPU: spin while send_pkt_work holds tx_lock
        on another vCPU, then reclaim under it.  (Two charges, so that the lock is asked for when
        the work item has its vCPU, not when it was queued behind a sender's send().)"""
        t_tx = self.t_tx
        left = self._lock_wait(self.lock_send, t_tx.pool)
        self.lock_tx.lead = left
        ev = t_tx.run(left + len(self.tx_used) * self.txq_s, self.lock_tx)
        t_tx.leave()  # the CPU stays with the charge just started; given up at its end
        ev.callbacks.append(self._tx_reclaim)

    def _tx_reclaim(self, _event) -> None:
        workers = self.t_tx.pool.workers  # tx_work stays on the interrupt vCPU (guest_cmwq)
        if workers is not None:  # the run ends: the pool's next item may start
            workers.stop()
        n = len(self.tx_used)
        self.tx_free += sum(self.tx_used)
        self.tx_used.clear()
        self.tx_cb_enabled = True
        if n and self.sendq:
            self._queue_send_work(self.t_tx)

    def in_flight_bytes(self) -> int:
        return (sum(p.len for p in self.sendq) + sum(p.len for p in self.txring)
                + sum(p.len for p in self.rx_used) + self.held)
