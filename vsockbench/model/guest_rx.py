"""The device-to-guest half of a guest queue pair (:class:`~vsockbench.model.guest.GuestQueue`
inherits it): the interrupt (``vm_interrupt`` -> ``vring_interrupt``), the RX ring the device
fills and ``_rx_work`` (``virtio_transport_rx_work``) that delivers it, from
net/vmw_vsock/virtio_transport.c.  The mechanisms and their simplifications are described in
:mod:`vsockbench.model.guest`; the state (rings, counters, threads) is set up there.
"""

from __future__ import annotations

from .cpu import wake_after

__all__ = ["RxSide"]

RX_BATCH = 8  # buffers delivered per CPU charge in rx_work (speed; per-buffer cost is kept)


class RxSide:
    """Interrupts, the RX ring and rx_work of a :class:`~vsockbench.model.guest.GuestQueue`."""

    def _unsuppressed_irq(self, thread) -> float:
        """An interrupt the guest had disabled but the device sends anyway (no EVENT_IDX):
        vring_interrupt runs and queue_work finds the item queued.  With ``guest_irq_preempts``
        (Firecracker profiles fitted since 2026-11-27, thirteenth session) vm_interrupt takes its
        vCPU at once (below); without it, a simplification the older profiles were fitted with,
        its cost is accounted to ``thread`` without competing for a vCPU.  Returns the backend's
        signal cost."""
        self.irqs += 1
        if not self.irq_preempts:
            thread._account(self.env.now, self.irq_s)
            return self.signal_s
        # vm_interrupt runs at once on the interrupt vCPU (guest_irq_preempts): the running thread
        # is delayed by its cost; one that arrives while the previous is handled is merged into it.
        # Simplification: the LAPIC would hold that one pending in its IRR (the handler runs with
        # interrupts off) and run vm_interrupt once more after it, merging only a third; rare in
        # the CI's rows (one merge in the 60 throughput rows of four Firecracker setups, 2026-11-28)
        now, cost = self.env._now, self.irq_s
        if now < self._irq_until:
            self.irqs -= 1
            self.merged_irqs += 1
            return self.signal_s
        self._irq_until = now + cost
        holders = self.t_irq.pool.holders
        if holders:
            victim = max(holders, key=holders.__getitem__)
            victim.delay += cost
            holders[victim] += cost
            self.t_irq._account(now, cost)
        else:  # an idle vCPU wakes for it
            self.t_irq.run(cost)
        return self.signal_s

    def signal_used(self, tx: bool, rx: bool) -> float:
        """One interrupt for both queues (profile backend_one_irq_per_event): vm_interrupt runs
        the callbacks of every queue with used buffers (vring_interrupt), so when both want it,
        rx_work's run carries the interrupt and tx_work's none; when neither does, the device
        (without EVENT_IDX) interrupts anyway.  Returns the backend's signal cost."""
        woke_rx = rx and self.rx_cb_enabled
        woke_tx = tx and self.tx_cb_enabled
        if not (woke_rx or woke_tx):
            if self.suppress:
                return 0.0
            return self._unsuppressed_irq(self.t_rx if rx else self.t_tx)
        if woke_rx:
            self.signal_rx()
        if woke_tx:
            if woke_rx:
                self.irqs -= 1  # counted once, by signal_rx
                self._tx_irq_paid = True
            self.signal_tx()
        return self.signal_s

    def take_rx_buffer(self) -> bool:
        """The device takes one posted RX buffer; False when the ring is empty."""
        if self.rx_avail:
            self.rx_avail -= 1
            return True
        self.rx_kick_enabled = True  # vhost_enable_notify on the RX vq: kick me after a refill
        return False

    def put_rx(self, pkt) -> None:
        """The device filled one RX buffer with ``pkt`` (header + <= rx_buf_payload bytes)."""
        self.rx_used.append(pkt)
        self.packets += 1
        self.bytes += pkt.len
        if self.record is not None:
            self.record(pkt, self)

    def signal_rx(self) -> float:
        if self.rx_cb_enabled:
            self.rx_cb_enabled = False
            self.irqs += 1
            self._rx_queued = True
            ev = self._rx_ev
            if ev is not None:
                self._rx_ev = None
                wake_after(self.env, ev, self._wq_delay())
            return self.signal_s
        if not self.suppress:
            return self._unsuppressed_irq(self.t_rx)
        return 0.0

    def _rx_work(self):
        env, prof = self.env, self.prof
        per_pkt = prof.guest_recv_per_pkt_ns * 1e-9
        refill_ns = prof.guest_rx_refill_ns * 1e-9
        wake = prof.guest_wakeup_latency_ns * 1e-9
        t_rx = self.t_rx
        deliver = self.model.guest_recv_pkt
        half = self.rx_ring // 2
        rx_used = self.rx_used
        xcpu, pool = self.xcpu_s, t_rx.pool
        # The kernel's order: the do/while over virtqueue_enable_cb() drains, and only after it
        # (out:) the ring is refilled, so one run ends once the device has no buffer left; then
        # process_one_work() calls cond_resched().  Modelled on PREEMPT_NONE pools, where it
        # bounds a run nothing else can interrupt.  Simplification: preemptible pools keep the
        # earlier order (refill inside the loop, the run going on while used buffers appear),
        # which every shipped profile was fitted with; there a woken thread preempts rx_work
        # between charges anyway.
        kernel_order = pool.preempt_none
        workers = pool.workers  # the interrupt vCPU's worker pool (guest_cmwq)
        in_run = False  # holds a worker: between a run's start and its end
        while True:
            if not self._rx_queued:
                t_rx.leave()
                self._rx_ev = env.event()
                yield self._rx_ev
                # one run of virtio_transport_rx_work: its do/while over virtqueue_enable_cb() has
                # no cond_resched(), so a PREEMPT_NONE guest runs it to the end but for its sleeps
                t_rx.enter()
            self._rx_queued = False
            if workers is not None and not in_run:
                in_run = True
                wait = workers.start()
                if wait is not None:  # behind send_pkt_work or tx_work running on this vCPU
                    yield wait
            cost = self.irq_s  # the interrupt and the kworker run it queues
            while True:
                if not rx_used:
                    break
                n = min(len(rx_used), RX_BATCH)
                batch = []
                held = remote = 0
                for _ in range(n):
                    pkt = rx_used.popleft()
                    batch.append(pkt)
                    held += pkt.len
                    if pkt.conn.g_app_pool not in (pool, None):  # its reader runs on another vCPU
                        remote += 1
                self.held += held
                self.cross_vcpu[0] += remote
                yield self.t_rx.run(cost + per_pkt * n + xcpu * remote)
                cost = 0.0
                for pkt in batch:  # each stays held (in flight) until delivered
                    end = pkt.conn.g
                    if end.lock_start <= env._now < end.lock_end and end.lock_pool is not t_rx.pool:
                        # virtio_transport_recv_pkt takes lock_sock: while the socket's app owns it
                        # (inside send()/recv() on another vCPU) the kworker sleeps in __lock_sock
                        # and every socket behind this packet waits; release_sock wakes it.
                        # Simplification: it then has the lock (a hand-over), though lock_sock
                        # is not fair and an app that calls again at once may take it first.
                        # Only an app pinned to another vCPU (its own pool) contends: on the
                        # kworker's own vCPU the syscall ends first (PREEMPT_NONE guests), and an
                        # unpinned app follows rx_work's sync wake-ups to its vCPU (wake_affine;
                        # a free pool, which does not track CPUs, stands for that).
                        if workers is not None:  # the worker sleeps: the pool may start another
                            workers.stop()
                        yield env.timeout(end.lock_end - env._now + wake * self.jitter())
                        if workers is not None:
                            workers.woke()
                    self.held -= pkt.len
                    deliver(pkt, self)
            if kernel_order:
                self.rx_cb_enabled = True
                if rx_used:  # virtqueue_enable_cb() saw more: the do/while goes round again
                    self.rx_cb_enabled = False
                    self._rx_queued = True
                    continue
            # out: refill only below half (virtio_transport_rx_work -> virtio_vsock_rx_fill)
            posted = self.rx_avail + len(rx_used)
            if posted < half:
                refill = self.rx_ring - posted
                kick = 0.0
                self.rx_avail += refill
                if self.rx_kick_enabled or not self.suppress:  # virtio_vsock_rx_fill -> virtqueue_kick
                    self.rx_kick_enabled = False
                    self.kicks += 1
                    kick = self.kick_s
                    self.backend.notify_rx(self)
                yield self.t_rx.run(refill * refill_ns + kick)
            if kernel_order:
                # the run ends: process_one_work()'s cond_resched() lets a woken thread in before
                # the next run (queued by an interrupt during the refill, callbacks being on);
                # with none queued the loop's head leaves the section and sleeps
                if workers is not None:
                    workers.stop()
                    in_run = False
                if self._rx_queued:
                    t_rx.leave()
                    t_rx.enter()
                continue
            self.rx_cb_enabled = True
            if rx_used:  # virtqueue_enable_cb() saw more: go round again (the same run)
                self.rx_cb_enabled = False
                self._rx_queued = True
            elif workers is not None:
                workers.stop()
                in_run = False
