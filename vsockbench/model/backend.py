"""Device backends: the host-side thread(s) that serve a guest's virtqueues.

* :class:`VhostBackend` (drivers/vhost/vsock.c): one kernel worker with a FIFO
  of work items (``vhost_run_work_list``), TX-kick and send_pkt handlers, each
  yielding after ``VHOST_VSOCK_PKT_WEIGHT`` packets or ``VHOST_VSOCK_WEIGHT``
  bytes by requeueing itself at the tail (``vhost_exceeds_weight``).  The
  host socket's ``recv_pkt`` runs inside the worker; host-to-guest skbs are
  split across guest RX buffers (``vhost_transport_do_send_pkt``).
* :class:`UserspaceBackend` for ``vhost-user`` (rust-vmm vhost-device-vsock:
  one vring thread for RX+TX+backend epoll, ``vhu_vsock_thread.rs``) and
  ``vmm`` (Firecracker's VMM event thread, shared by every device of the VM,
  ``devices/virtio/vsock/device.rs`` + ``unix/muxer.rs``).  One syscall per
  packet to the host application's Unix socket; RX is one read() per guest
  RX buffer, one data packet per connection per epoll round in both
  (``backend_rx_one_per_pass``: Firecracker's ``recv_pkt`` drops the Rw indication,
  vhost-device-vsock's pops the connection's key; the next epoll_wait sets it again),
  vhost-device-vsock with an epoll_ctl pair per packet (``backend_epoll_ctl_per_rx_pkt``).
  One interrupt per RX pass (Firecracker: one for both queues, ``backend_one_irq_per_event``).
  Simplification for vhost-device-vsock: it hands each used descriptor to a helper thread
  (``EventData`` over an mpsc channel) that adds it and signals when ``needs_notification``;
  the model signals once per pass from the vring thread, its CPU in the per-buffer cost.
  Firecracker's
  interrupts go through a GSI irqfd, which KVM injects from a kworker on the VMM's core
  (``kvm_irq_inject_ns``).
"""

from __future__ import annotations

from collections import deque

from .copycost import copy_seconds, fixed_s_per_byte
from .cpu import CpuPool, wake_after
from .socket import CREDIT_REQUEST, REQUEST, RW, SEQ_EOM, Pkt, unix_writable

__all__ = ["VhostBackend", "UserspaceBackend"]

# est: an arm64 host's in-atomic SPI injection (vgic_irqfd_set_irq -> vgic_queue_irq_unlock and the
# target vCPU's kick) is kvm_irq_inject_ns less the kworker's wake-up and two context switches
INLINE_INJECT_SHARE = 0.3
RX_CHUNK = 4  # guest RX buffers filled per CPU charge: used entries become visible this often (speed)
OTHER_DEVICES_PERIOD = 50e-6  # s: granularity of the VMM thread's work for net/block devices


class _Worker:
    """A backend thread with a FIFO of work items, each queued at most once (VHOST_WORK_QUEUED)."""

    def __init__(self, model, name: str, prof):
        self.model, self.prof, self.name = model, prof, name
        self.env = model.env
        self.thread = model.thread("host", name)
        self.work: deque = deque()
        self.queued: set = set()
        self._wake = None
        self.yields = 0  # times a handler gave up the worker on its weight
        self.rounds = 0  # work items run: a vhost handler's turn, a daemon's / the VMM's epoll round
        self.queues: list = []
        self.wake_s = prof.backend_wakeup_latency_ns * 1e-9
        self.jitter = model.jitter
        # per-operation costs in seconds, constant for the run (the profile is frozen)
        self.per_pkt_s = prof.backend_per_pkt_ns * 1e-9
        self.per_buf_s = prof.backend_per_rxbuf_ns * 1e-9
        self.syscall_s = prof.backend_syscall_ns * 1e-9
        self.wake_app_s = prof.backend_wake_app_ns * 1e-9
        self.write_space_quarter = prof.uds_write_space_quarter
        # the copy rate when it is constant for the run, else None (by the footprint: copycost.py)
        self.copy_fixed = fixed_s_per_byte(prof.backend_copy_ns_per_kib, prof)
        model.env.process(self._loop())

    def _queue(self, item) -> None:
        if item not in self.queued:
            self.queued.add(item)
            self.work.append(item)
            ev = self._wake
            if ev is not None:  # eventfd -> wake_up_process -> scheduled after the wake-up latency
                self._wake = None
                wake_after(self.env, ev, self.wake_s * self.jitter())

    def notify_tx(self, q) -> None:
        self._queue(("tx", q))

    def notify_rx(self, q) -> None:
        self._queue(("rx", q))

    def _loop(self):
        env = self.env
        work, queued = self.work, self.queued
        while True:
            if not work:
                self._wake = env.event()
                yield self._wake
            item = work.popleft()
            queued.discard(item)
            self.rounds += 1
            yield from self.handle(item)


class VhostBackend(_Worker):
    """One vhost worker (today one per device; per queue pair in the multi-queue design)."""

    kind = "vhost"

    def host_send(self, pkt, q) -> None:
        """vhost_transport_send_pkt(): append to send_pkt_queue, queue send_pkt_work."""
        q.host_sendq.append(pkt)
        self._queue(("rx", q))

    def handle(self, item):
        """The handler generator for a work item (returned, not wrapped: one generator level less)."""
        kind, q = item
        return self._handle_tx(q) if kind == "tx" else self._handle_rx(q)

    def _handle_tx(self, q):
        """vhost_vsock_handle_tx_kick(): drain the TX ring into host sockets, up to the weights."""
        prof, model, run = self.prof, self.model, self.thread.run
        per_pkt = self.per_pkt_s
        wp, wb = prof.weight_pkts, prof.weight_bytes
        q.tx_kick_enabled = False  # vhost_disable_notify: "avoid further vmexits"
        pkts = nbytes = 0
        deliver = model.host_recv_pkt
        copy_kib, per_byte = prof.backend_copy_ns_per_kib, self.copy_fixed
        while True:
            if not q.txring:
                q.tx_kick_enabled = True  # vhost_enable_notify, then re-check for a race
                if q.txring:
                    q.tx_kick_enabled = False
                    continue
                break
            pkt = q.pop_tx()
            q.held += pkt.len
            # vhost_vsock_alloc_skb copies from guest memory (rate by the data in flight: copycost.py)
            yield run(per_pkt + copy_seconds(pkt.len, per_byte, copy_kib, prof, pkt.conn))
            q.held -= pkt.len
            # virtio_transport_recv_pkt in the worker takes the host socket's lock_sock.  No wait
            # is modelled: the worker's sync wake-up of the reader (sk_data_ready ->
            # wake_up_interruptible_sync_poll) lets wake_affine run the reader on the worker's
            # core, so its recvmsg rarely holds the lock while the worker runs (the guest's
            # rx_work waits only for an app pinned elsewhere, model/guest_rx.py).  Held out, a
            # waiting worker (and rx_work waiting for unpinned apps) took Linux 5.2 from
            # 4.8 % / 22 % to 19 % / 45 % (bench/cross_validate.py).
            deliver(pkt, q)
            pkts += 1
            nbytes += pkt.len
            if wp and (pkts >= wp or nbytes >= wb):  # vhost_exceeds_weight -> requeue at the tail
                self.yields += 1
                self._queue(("tx", q))
                break
        if pkts:
            self.thread.debt += q.signal_tx()  # vhost_signal once per pass; paid with the next run

    def _handle_rx(self, q):
        """vhost_transport_do_send_pkt(): split each skb across guest RX buffers."""
        prof, run = self.prof, self.thread.run
        per_skb = prof.backend_h2g_per_skb_ns * 1e-9
        per_buf = self.per_buf_s
        payload = prof.rx_buf_payload_bytes
        wp, wb = prof.weight_pkts, prof.weight_bytes
        sendq = q.host_sendq
        copy_kib, per_byte = prof.backend_copy_ns_per_kib, self.copy_fixed
        bufs = nbytes = 0
        while sendq:
            pkt = sendq[0]
            remaining = pkt.len - q.host_off
            need = max(1, -(-remaining // payload))
            k = min(need, q.rx_avail, RX_CHUNK)
            if wp:
                k = min(k, wp - bufs)
            if k <= 0:
                q.take_rx_buffer()  # none posted: enable notify and wait for the guest's RX kick
                break
            q.rx_avail -= k
            pieces = []
            for _ in range(k):
                n = remaining if remaining < payload else payload
                remaining -= n
                last = remaining == 0
                pieces.append(Pkt(pkt.conn, False, pkt.op, n, pkt.flags if last else pkt.flags & ~SEQ_EOM,
                                  pkt.buf_alloc, pkt.fwd_cnt, pkt.reply))
            sent = pkt.len - q.host_off - remaining
            # per skb: dequeue from send_pkt_queue, free it, wake a writer waiting for space; the
            # descriptor, header and copy work is per buffer (vhost_transport_do_send_pkt)
            skb_cost = per_skb if q.host_off == 0 else 0.0
            yield run(skb_cost + k * per_buf + copy_seconds(sent, per_byte, copy_kib, prof, pkt.conn))
            for piece in pieces:
                q.put_rx(piece)
            if remaining == 0:
                sendq.popleft()
                q.host_off = 0
            else:
                q.host_off = pkt.len - remaining  # requeued at the head, rest goes out next
            bufs += k
            nbytes += sent
            if wp and (bufs >= wp or nbytes >= wb):
                self.yields += 1
                self._queue(("rx", q))
                break
        if not sendq:  # send_pkt_queue drained: vhost_enable_notify on the RX vq, so a refill kicks
            q.rx_kick_enabled = True
        if bufs:
            self.thread.debt += q.signal_rx()


class UserspaceBackend(_Worker):
    """A vhost-user daemon's vring thread or the Firecracker VMM thread."""

    def __init__(self, model, name: str, prof):
        super().__init__(model, name, prof)
        self.kind = prof.backend
        self.loop_s = prof.backend_loop_ns * 1e-9
        # EPOLLIN on a connection's host socket only while the guest has credit (Firecracker's
        # get_polled_evset), or a CREDIT_REQUEST per stall (vhost-device-vsock): profile field
        # backend_epollin_needs_credit, profiles.SOURCES
        self.credit_gated = prof.backend_epollin_needs_credit
        # Firecracker's event loop (profiles.SOURCES): a pass yields one RW packet per connection
        # (csm/connection.rs recv_pkt drops the Rw indication, VsockMuxer::notify's next epoll_wait
        # sets it again) and signals once for both queues (vsock/event_handler.rs)
        self.rx_one = prof.backend_rx_one_per_pass
        self.one_irq = prof.backend_one_irq_per_event
        self._tx_used = 0  # TX buffers used this pass, signalled with the RX ones (one_irq)
        self._in_rx = False  # inside _process_rx: EPOLLIN now is seen by the next pass (rx_one)
        self._deferred: list = []  # connections that became readable during the pass
        # Firecracker signals a GSI irqfd, which KVM injects from a kworker queued on the signalling
        # CPU (irqfd_wakeup -> schedule_work(&irqfd->inject); profiles.SOURCES kvm_irq_inject_ns):
        # the VMM thread and that kworker share the VMM's core (the CI pins the VMM to a core of its
        # own), and the kworker's CPU is not the VMM thread's.
        self.inject_s = prof.kvm_irq_inject_ns * 1e-9
        # arm64 from 5.9 injects the SPI inside the irqfd write: the VMM thread's own CPU (SOURCES)
        self.inject_inline = prof.kvm_irq_inject_inline
        self.inject_inline_s = self.inject_s * INLINE_INJECT_SHARE
        self._inject_queued = False
        if self.inject_s and not self.inject_inline:
            core = CpuPool(model.env, "vmm-core", 1)
            self.thread.pool = core
            self.injector = model.thread("host", f"kworker:irqfd_inject-{name}")
            self.injector.pool = core
        if prof.backend_other_util > 0:
            model.env.process(self._other_devices())

    def _other_devices(self):
        """The VMM thread also emulates net/block: a steady share of its time."""
        env = self.env
        busy = OTHER_DEVICES_PERIOD * self.prof.backend_other_util
        while True:
            yield env.timeout(OTHER_DEVICES_PERIOD - busy)
            self._queue(("other", busy))
            yield env.timeout(busy)

    def host_data(self, conn) -> None:
        """EPOLLIN on the host app's Unix socket (or a control reply owed to the guest); none for
        Firecracker while the guest has no credit (``credit_gated``)."""
        if self.credit_gated and conn.h.credit() == 0:
            return
        q = conn.q
        if self.rx_one and self._in_rx and not conn.in_rxq:
            if conn not in self._deferred:  # the muxer's next epoll_wait sees it, not this pass
                self._deferred.append(conn)
            return
        if not conn.in_rxq:
            conn.in_rxq = True
            q.rx_pending.append(conn)
        self._queue(("rx", q))

    def host_send(self, pkt, q) -> None:
        """A control packet the backend owes the guest (RESPONSE, CREDIT_UPDATE, RST...)."""
        conn = pkt.conn
        conn.ctrl_h2g.append(pkt)
        if not conn.in_rxq:
            conn.in_rxq = True
            q.rx_pending.append(conn)
        self._queue(("rx", q))

    def flush(self, conn) -> None:
        """EPOLLOUT: the host app read, the LocalTxBuf can drain."""
        self._queue(("out", conn))

    def _loop(self):
        """The event loop: each work item is one epoll round.  The handlers are dispatched here
        rather than through a handler generator (``_Worker._loop``): one generator level less on
        every resume of the commonest items (same events, same order)."""
        env, thread = self.env, self.thread
        work, queued = self.work, self.queued
        while True:
            if not work:
                self._wake = env.event()
                yield self._wake
            kind, obj = item = work.popleft()
            queued.discard(item)
            if kind == "other":  # the VMM thread's net/block work (_other_devices)
                yield thread.run(obj)
                continue
            self.rounds += 1
            # one epoll_wait round, charged with the next packet's work (no extra event)
            thread.debt += self.loop_s
            if kind == "out":  # EPOLLOUT: flush a connection's LocalTxBuf, then an RX pass
                yield thread.run(self.syscall_s)
                self.model.backend_flush(obj)
                obj = obj.q
            elif kind == "tx":  # a TX kick, then an RX pass on the queue
                yield from self._process_tx(obj)
            yield from self._process_rx(obj)

    def _signal(self, cost: float) -> float:
        """An interrupt sent (``cost`` > 0, the irqfd write) queues irqfd_inject unless it is still
        queued: schedule_work() on pending work is a no-op, so signals coalesce.  Simplifications:
        the item counts as queued until its run ends (a signal during the run is folded into it),
        and the guest takes the interrupt at the signal, not when the kworker has run (it preempts
        the VMM thread at once: a short delay).  On an arm64 host of 5.9 or later the injection runs
        inside the write instead (``kvm_irq_inject_inline``): the injection alone (``INLINE_INJECT_SHARE`` of the
        kworker path's cost) is the signalling thread's."""
        if cost and self.inject_inline:
            return cost + self.inject_inline_s
        if cost and self.inject_s and not self._inject_queued:
            self._inject_queued = True
            self.injector.run(self.inject_s).callbacks.append(self._injected)
        return cost

    def _injected(self, _event) -> None:
        self._inject_queued = False

    def _process_tx(self, q):
        """Firecracker process_tx / vhost-device-vsock process_tx: one write() per packet."""
        prof, model, run = self.prof, self.model, self.thread.run
        per_pkt, syscall, wake_app = self.per_pkt_s, self.syscall_s, self.wake_app_s
        copy_kib, per_byte = prof.backend_copy_ns_per_kib, self.copy_fixed
        q.tx_kick_enabled = False
        n = 0
        while q.txring:
            pkt = q.pop_tx()
            cost = per_pkt + (syscall + copy_seconds(pkt.len, per_byte, copy_kib, prof, pkt.conn)
                              if pkt.op == RW else 0.0)
            if pkt.op == REQUEST:
                cost += 2 * syscall  # connect() to <uds_path>_<port>
            q.held += pkt.len
            yield run(cost)
            q.held -= pkt.len
            asleep = wake_app and pkt.conn.host_reader_wake is not None
            model.backend_recv_pkt(pkt, q)
            if asleep and pkt.conn.host_reader_wake is None:
                yield run(wake_app)  # the write() woke the sleeping host reader: try_to_wake_up (SOURCES)
            n += 1
        q.tx_kick_enabled = True
        if self.one_irq:  # signalled with the RX pass that follows (_loop), one interrupt for both
            self._tx_used += n
        elif n:
            self.thread.debt += self._signal(q.signal_tx())

    def _process_rx(self, q):
        """Fill guest RX buffers from pending connections; one read() per buffer."""
        prof, run = self.prof, self.thread.run
        per_buf, syscall = self.per_buf_s, self.syscall_s
        # vhost-device-vsock: EPOLL_CTL_DEL at the EPOLLIN, a re-register at the read (SOURCES)
        rearm = syscall * prof.backend_epoll_ctl_per_rx_pkt
        payload = prof.rx_buf_payload_bytes
        pending = q.rx_pending
        copy_kib, per_byte = prof.backend_copy_ns_per_kib, self.copy_fixed
        bufs = 0
        again = []  # rx_one: connections served this pass that still have data and credit
        self._in_rx = True
        while pending:
            conn = pending[0]
            if conn.ctrl_h2g:
                if not q.take_rx_buffer():
                    break
                pkt = conn.ctrl_h2g.popleft()
                cost = per_buf
            elif conn.uds_h2g and not conn.closed:
                credit = conn.h.credit()
                if credit == 0:
                    pending.popleft()
                    conn.in_rxq = False
                    if prof.host_sends_credit_request and not conn.credit_requested and not self.credit_gated:
                        conn.credit_requested = True  # resumes on the guest's CREDIT_UPDATE
                        self.host_send(conn.h.stamp(Pkt(conn, False, CREDIT_REQUEST, 0, 0, 0, 0)), q)
                    continue
                if not q.take_rx_buffer():
                    break
                n = min(payload, credit, conn.uds_h2g)
                conn.uds_h2g -= n
                conn.h.take_credit(n)
                pkt = conn.h.stamp(Pkt(conn, False, RW, n, 0, 0, 0))
                cost = per_buf + syscall + rearm + copy_seconds(n, per_byte, copy_kib, prof, conn)
                w = conn.host_writer_wake
                if w is not None and (not self.write_space_quarter or unix_writable(conn.uds_h2g, conn.uds_cap)):
                    # the read() frees the skbs the writer is charged for (sock_wfree); unix_write_space
                    # wakes it only once unix_writable()
                    cost += self.wake_app_s
                    conn.host_writer_wake = None
                    conn.host_waker(w)
            else:
                pending.popleft()
                conn.in_rxq = False
                continue
            q.held += pkt.len
            yield run(cost)
            q.held -= pkt.len
            q.put_rx(pkt)
            bufs += 1
            if self.rx_one and pkt.op == RW:  # its Rw indication is spent: out until the next epoll
                pending.popleft()
                conn.in_rxq = False
                if conn.uds_h2g and conn.h.credit() > 0:
                    again.append(conn)
                continue
            if prof.rx_round_robin and pending and pending[0] is conn:
                pending.rotate(-1)  # one packet per connection per round
        if prof.backend_rx_notify_every_pass:  # a refill kicks (SOURCES)
            q.rx_kick_enabled = True
        if self.one_irq:
            tx, self._tx_used = self._tx_used, 0
            if bufs or tx:
                self.thread.debt += self._signal(q.signal_used(tx > 0, bufs > 0))
        elif bufs:
            self.thread.debt += self._signal(q.signal_rx())
        self._in_rx = False
        if self.rx_one:  # level-triggered EPOLLIN: the next pass (a new epoll round) serves them
            again += [c for c in self._deferred if c not in again]
            self._deferred.clear()
            for conn in again:
                self.host_data(conn)


def make_backend(model, name: str, prof):
    return VhostBackend(model, name, prof) if prof.backend == "vhost" else UserspaceBackend(model, name, prof)

