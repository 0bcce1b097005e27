"""The model: CPUs, devices, backends and the socket-level receive paths.

:class:`Model` builds, from a :class:`~vsockbench.scenario.Scenario`, the
guest's devices (one :class:`GuestQueue` per queue pair), their backends
(grouped by the threading model of each backend kind) and the connections of
every flow, then offers the operations the application processes in
:mod:`vsockbench.model.apps` use: connect, send, recv, close.

Receive paths (``virtio_transport_recv_pkt`` dispatch):
``guest_recv_pkt`` runs in the guest's rx_work, ``host_recv_pkt`` in the vhost
worker (host sockets are Linux sockets), ``backend_recv_pkt`` in a userspace
backend (its per-connection state stands in for the host socket, and data is
forwarded to the host application's Unix socket).
"""

from __future__ import annotations

import zlib
from collections import deque

import numpy as np
import simpy

from .backend import make_backend
from .cpu import CpuPool, Thread, wake_after
from .guest import GuestQueue
from .socket import (
    CREDIT_REQUEST,
    CREDIT_UPDATE,
    EVERY_READ,
    HOST_CID,
    REQUEST,
    RESPONSE,
    RST,
    RW,
    SHUTDOWN,
    Conn,
    End,
    Pkt,
)
from .workqueue import WorkerPool

__all__ = ["Model"]

LINUX_CREDIT_THRESHOLD = 65536  # VIRTIO_VSOCK_MAX_PKT_BUF_SIZE in virtio_transport_stream_do_dequeue
NOISE_BLOCK = 4096
CONTROL_ON_QUEUE0 = (REQUEST, RESPONSE, RST)  # multi-queue sketch: connection ops on pair 0


class Model:
    """One simulated VM with its host side; see the module docstring."""

    def __init__(self, scenario, seed: int):
        self.scenario = scenario
        self.env = simpy.Environment()
        self.rng = np.random.default_rng(seed)
        run = scenario.run
        self.window = (run.warmup, run.warmup + run.duration)
        # KVM halt polling is a host setting (kvm.halt_poll_ns): the default device's profile carries it
        halt_poll = scenario.default_device.resolved.halt_poll_ns * 1e-9
        vcpus = scenario.guest.vcpus
        self.pinned = scenario.guest.affinity == "pinned"
        if self.pinned:  # one pool per vCPU: a pinned thread waits for its own vCPU only
            self.vcpu_pools = [CpuPool(self.env, "guest", 1, halt_poll=halt_poll, window=self.window) for _ in range(vcpus)]
            self.guest_pool = self.vcpu_pools[0]
        else:
            self.guest_pool = CpuPool(self.env, "guest", vcpus, halt_poll=halt_poll, window=self.window)
            self.vcpu_pools = [self.guest_pool]
        self.host_pool = CpuPool(self.env, "host", scenario.host.cores)
        # the guest kernel's preemption model, like halt polling carried by the default device's profile
        if scenario.default_device.resolved.guest_preempt_none:
            for pool in self.vcpu_pools:
                pool.preempt_none = True
                pool.cfs_factor = 1.0 + (min(vcpus, 8).bit_length() - 1)
                pool.cfs_vruntime = scenario.default_device.resolved.guest_cfs_vruntime
        # a vCPU's workqueue pool (kernel/workqueue.c); a free multi-vCPU pool does not track
        # which vCPU runs what, so cmwq is modelled on single-vCPU pools only (profiles SOURCES)
        if scenario.default_device.resolved.guest_cmwq:
            for pool in self.vcpu_pools:
                if pool.size == 1:
                    pool.workers = WorkerPool(self.env)
        self.threads: list[Thread] = []
        self.packets: list[tuple] = []
        self.packet_mode = run.packets
        self._pkt_seq = 0
        self.messages: list[tuple] = []
        self.conns: list[Conn] = []
        self.guest_listeners: dict[tuple[int, int], list] = {}  # (cid, port) -> accepted conns
        self._noise = np.empty(0)
        self._noise_i = 0
        self._sigma = max(d.resolved.jitter_sigma for d in scenario.devices)
        self.queues: dict[int, list[GuestQueue]] = {}
        self.backends: list = []
        self.traces: dict = {}  # trace path -> Trace, read once per run
        self._build_devices()

    # ------------------------------------------------------------ building
    def thread(self, side: str, name: str, vcpu: int = 0) -> Thread:
        """A thread of ``side``; a guest thread of a pinned guest runs on ``vcpu`` only."""
        if side == "guest":
            pool = self.vcpu_pools[vcpu % len(self.vcpu_pools)] if self.pinned else self.guest_pool
        else:
            pool = self.host_pool
        t = Thread(self.env, pool, name, side, self.window)
        self.threads.append(t)
        return t

    def _build_devices(self) -> None:
        vmm_shared = None  # Firecracker: one VMM thread for every emulated device of the VM
        irq_line = 0  # the guest's interrupt lines in device order (default interrupt vCPUs)
        for dev in self.scenario.devices:
            prof = dev.resolved
            first = irq_line if dev.irq_vcpu is None else dev.irq_vcpu
            qs = [GuestQueue(self, dev, i, irq_vcpu=first + i) for i in range(dev.queues)]
            irq_line += dev.queues
            for q in qs:
                q.host_sendq = deque()
                q.host_off = 0
                q.rx_pending = deque()
            self.queues[dev.cid] = qs
            if dev.worker == "queue":
                for q in qs:
                    b = make_backend(self, f"{_thread_prefix(prof.backend)}-{dev.cid}.{q.index}", prof)
                    self._attach(b, [q])
            elif prof.backend == "vmm":
                if vmm_shared is None:
                    vmm_shared = make_backend(self, "vmm-event-loop", prof)
                self._attach(vmm_shared, qs)
            else:
                self._attach(make_backend(self, f"{_thread_prefix(prof.backend)}-{dev.cid}", prof), qs)

    def _attach(self, backend, qs) -> None:
        if backend not in self.backends:
            self.backends.append(backend)
        for q in qs:
            q.backend = backend
            backend.queues.append(q)

    def steer(self, dev, flow, conn_index: int, guest_port: int, host_port: int, vcpu: int) -> GuestQueue:
        """Pick the queue pair of a new connection (multi-queue steering)."""
        qs = self.queues[dev.cid]
        if len(qs) == 1:
            return qs[0]
        if dev.steering == "class":
            return qs[flow.queue if flow.queue is not None else 0]
        if dev.steering == "vcpu":
            return qs[vcpu % len(qs)]
        # out-of-tree sketch: skb->queue_mapping = skb->hash % max_queue_pairs (a flow hash)
        h = zlib.crc32(f"{dev.cid}:{guest_port}:{HOST_CID}:{host_port}".encode())
        return qs[h % len(qs)]

    def new_conn(self, flow, dev, q, guest_port: int, host_port: int, g_initiates: bool) -> Conn:
        gp, hp = dev.resolved, q.prof
        seq = flow.socket == "seqpacket"
        g_rule = EVERY_READ if gp.credit_update_every_read else LINUX_CREDIT_THRESHOLD
        g = End(flow.buffer_bytes, g_rule, gp.guest_credit_on_drain, gp.linux_tx_window_min, seq)
        if hp.backend == "vhost":  # the host end is a Linux socket with the flow's buffer
            h_rule = EVERY_READ if hp.credit_update_every_read else LINUX_CREDIT_THRESHOLD
            h = End(flow.buffer_bytes, h_rule, hp.host_credit_on_drain, hp.linux_tx_window_min, seq)
        else:  # the backend's per-connection state: 64 KiB buffer, its own threshold
            h = End(hp.host_buf_alloc_bytes, hp.host_credit_threshold_bytes, False, False, seq)
        conn = Conn(len(self.conns), flow.name, q, g, h, guest_port, host_port, g_initiates, 2 if seq else 1)
        env, jitter = self.env, self.jitter
        g_lat, h_lat = gp.guest_wakeup_latency_ns * 1e-9, hp.host_wakeup_latency_ns * 1e-9
        g.waker = lambda ev: wake_after(env, ev, g_lat * jitter())
        h.waker = conn_host_waker = lambda ev: wake_after(env, ev, h_lat * jitter())
        conn.host_waker = conn_host_waker
        conn.userspace = hp.backend != "vhost"
        conn.uds_cap = hp.uds_buffer_bytes
        conn.txbuf_cap = hp.host_buf_alloc_bytes
        self.conns.append(conn)
        return conn

    # ------------------------------------------------------------ noise and records
    def jitter(self) -> float:
        """A log-normal multiplier (median 1) for wake-up and scheduling latencies."""
        i = self._noise_i
        if i >= len(self._noise):
            s = self._sigma
            self._noise = np.exp(self.rng.normal(-0.0, s, NOISE_BLOCK)) if s > 0 else np.ones(NOISE_BLOCK)
            self._noise = self._noise.tolist()
            i = 0
        self._noise_i = i + 1
        return self._noise[i]

    def record_packet(self, pkt: Pkt, q: GuestQueue) -> None:
        mode = self.packet_mode
        if mode == "none":
            return
        self._pkt_seq += 1
        if mode == "sample" and self._pkt_seq % 16:
            return
        c = pkt.conn
        if pkt.g2h:
            src, dst, sp, dp = q.cid, HOST_CID, c.guest_port, c.host_port
        else:
            src, dst, sp, dp = HOST_CID, q.cid, c.host_port, c.guest_port
        self.packets.append((self.env.now, q.cid, q.index, src, dst, sp, dp, pkt.len, c.type, pkt.op,
                             pkt.flags, pkt.buf_alloc, pkt.fwd_cnt, c.flow, c.id))

    # ------------------------------------------------------------ sending control packets
    def _ctrl_queue(self, conn: Conn, op: int) -> GuestQueue:
        if op in CONTROL_ON_QUEUE0:
            return self.queues[conn.q.cid][0]
        return conn.q

    def guest_ctrl(self, conn: Conn, op: int, flags: int = 0, reply: bool = False, sender=None) -> float:
        """The guest end sends a control packet from thread ``sender``; returns its kick cost."""
        q = self._ctrl_queue(conn, op)
        pkt = conn.g.stamp(Pkt(conn, True, op, 0, flags, 0, 0, reply))
        return q.xmit(pkt, sender)

    def host_ctrl(self, conn: Conn, op: int, flags: int = 0, reply: bool = False) -> None:
        pkt = conn.h.stamp(Pkt(conn, False, op, 0, flags, 0, 0, reply))
        if conn.userspace:  # owed to the guest on the connection's own queue (conn.ctrl_h2g)
            conn.q.backend.host_send(pkt, conn.q)
        else:
            q = self._ctrl_queue(conn, op)
            q.backend.host_send(pkt, q)

    # ------------------------------------------------------------ receive paths
    def guest_recv_pkt(self, pkt: Pkt, q: GuestQueue) -> None:
        """virtio_transport_recv_pkt() in the guest's rx_work."""
        conn, end, op = pkt.conn, pkt.conn.g, pkt.op
        end.space_update(pkt)
        if op == RW:
            end.enqueue(pkt)
        elif op == CREDIT_REQUEST:
            end.credit_updates += 1
            # a control reply's kick: owed by rx_work, paid off its critical path (Thread.owe)
            q.t_rx.owe(self.guest_ctrl(conn, CREDIT_UPDATE, reply=False, sender=q.t_rx))
        elif op == REQUEST:  # a host connect() reached a guest listener (virtio_transport_recv_listen)
            self.guest_listeners.setdefault((q.cid, conn.guest_port), []).append(conn)
            q.t_rx.owe(self.guest_ctrl(conn, RESPONSE, reply=True, sender=q.t_rx))
        elif op == RESPONSE:
            self._wake_connector(conn)
        elif op == SHUTDOWN:  # peer shut both ways: reply RST (virtio_transport_recv_connected)
            conn.closed = True
            q.t_rx.owe(self.guest_ctrl(conn, RST, reply=True, sender=q.t_rx))
        elif op == RST:
            conn.closed = True
            self._wake_connector(conn)

    def host_recv_pkt(self, pkt: Pkt, q: GuestQueue) -> None:
        """virtio_transport_recv_pkt() for a host (vhost) socket, in the vhost worker."""
        conn, end, op = pkt.conn, pkt.conn.h, pkt.op
        end.space_update(pkt)
        if op == RW:
            end.enqueue(pkt)
        elif op == CREDIT_REQUEST:
            self.host_ctrl(conn, CREDIT_UPDATE)
        elif op == REQUEST:
            self.host_ctrl(conn, RESPONSE, reply=True)
        elif op == RESPONSE:
            self._wake_connector(conn)
        elif op == SHUTDOWN:
            conn.closed = True
            self.host_ctrl(conn, RST, reply=True)
        elif op == RST:
            conn.closed = True
            self._wake_connector(conn)

    def backend_recv_pkt(self, pkt: Pkt, q: GuestQueue) -> None:
        """A userspace backend handles a guest packet (Firecracker csm/connection.rs send_pkt,
        vhost-device-vsock vsock_conn.rs send_pkt)."""
        conn, end, op = pkt.conn, pkt.conn.h, pkt.op
        end.space_update(pkt)
        backend = q.backend
        if backend.rx_one and conn.uds_h2g and not conn.in_rxq and end.credit() > 0:
            backend.host_data(conn)  # the muxer re-arms EPOLLIN after every guest packet (apply_conn_mutation)
        if op == RW:
            n = pkt.len
            room = conn.uds_cap - conn.uds_g2h
            if conn.txbuf:  # keep byte order: the tail waits behind older buffered bytes
                room = 0
            w = n if n <= room else room
            if conn.txbuf + (n - w) > conn.txbuf_cap:
                end.drops += 1  # LocalTxBufFull: a correct peer never causes it
                return
            conn.uds_g2h += w
            conn.txbuf += n - w
            end.rx_bytes += n - w
            end.fwd_cnt += w
            if w:
                self._wake_host_reader(conn)
            self._backend_credit_check(conn)
            if conn.uds_h2g and not conn.in_rxq and backend.credit_gated:
                backend.host_data(conn)  # the RW's fwd_cnt may bring credit: EPOLLIN re-armed
        elif op == CREDIT_UPDATE:
            conn.credit_requested = False
            if conn.uds_h2g:
                backend.host_data(conn)  # Firecracker: EPOLLIN re-armed once there is credit
        elif op == CREDIT_REQUEST:
            backend.host_send(end.stamp(Pkt(conn, False, CREDIT_UPDATE, 0, 0, 0, 0)), conn.q)
        elif op == REQUEST:  # connected to <uds_path>_<port>: answer RESPONSE
            backend.host_send(end.stamp(Pkt(conn, False, RESPONSE, 0, 0, 0, 0, True)), conn.q)
        elif op == RESPONSE:  # guest accepted: write "OK <port>\n" to the host app
            self._wake_connector(conn)
        elif op == SHUTDOWN:
            conn.closed = True
            backend.host_send(end.stamp(Pkt(conn, False, RST, 0, 0, 0, 0, True)), conn.q)
        elif op == RST:
            conn.closed = True
            self._wake_connector(conn)

    def _backend_credit_check(self, conn: Conn) -> None:
        """Firecracker: update when the guest's view of free space < 4 KiB
        (CONN_CREDIT_UPDATE_THRESHOLD); vhost-device-vsock: < tx_buffer_size / 4."""
        end = conn.h
        if end.fwd_cnt != end.last_fwd_cnt and end.buf_alloc - (end.fwd_cnt - end.last_fwd_cnt) < end.threshold:
            self._backend_credit_update(conn)

    def _backend_credit_update(self, conn: Conn) -> None:
        """The backend queues a proactive CREDIT_UPDATE for the guest (stamped now)."""
        end = conn.h
        end.credit_updates += 1
        conn.q.backend.host_send(end.stamp(Pkt(conn, False, CREDIT_UPDATE, 0, 0, 0, 0)), conn.q)

    def backend_flush(self, conn: Conn) -> None:
        """EPOLLOUT: move LocalTxBuf bytes into the Unix socket, credit the guest."""
        room = conn.uds_cap - conn.uds_g2h
        w = min(room, conn.txbuf)
        if w <= 0:
            return
        conn.txbuf -= w
        conn.h.rx_bytes -= w
        conn.uds_g2h += w
        conn.h.fwd_cnt += w
        self._wake_host_reader(conn)
        if conn.q.backend.prof.backend_credit_update_every_flush:
            # vhost-device-vsock (SOURCES); Firecracker checks its threshold (connection.rs notify ->
            # peer_needs_credit_update)
            self._backend_credit_update(conn)
        else:
            self._backend_credit_check(conn)

    def _wake_host_reader(self, conn: Conn) -> None:
        r = conn.host_reader_wake
        if r is not None:
            conn.host_reader_wake = None
            conn.host_waker(r)

    def _wake_connector(self, conn: Conn) -> None:
        ev = conn.connect_wait
        if ev is not None:
            conn.connect_wait = None
            ev.succeed()

    # ------------------------------------------------------------ invariants
    def in_flight_bytes(self) -> int:
        """Payload bytes accepted by send() and not yet returned by recv(), counted in place."""
        total = 0
        for qs in self.queues.values():
            for q in qs:
                total += q.in_flight_bytes()
                total += sum(p.len for p in q.host_sendq) - (q.host_off if q.host_sendq else 0)
        for c in self.conns:
            total += c.g.rx_bytes + (c.h.rx_bytes if not c.userspace else 0)
            if c.userspace:
                total += c.uds_g2h + c.txbuf + c.uds_h2g
        return total


def _thread_prefix(backend: str) -> str:
    return {"vhost": "vhost", "vhost-user": "vhost-user", "vmm": "vmm"}[backend]
