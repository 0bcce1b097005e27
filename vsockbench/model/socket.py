"""Packets, socket ends and credit: net/vmw_vsock/virtio_transport_common.c in miniature.

Every connection has two :class:`End` objects, each holding one side's credit
state (``struct virtio_vsock_sock``): ``buf_alloc``, ``fwd_cnt``,
``last_fwd_cnt``, ``tx_cnt``, ``peer_buf_alloc``, ``peer_fwd_cnt``,
``rx_bytes``, ``buf_used`` and the queue of received skbs.  For the vhost
backend the host end is a Linux socket; for the userspace backends
(vhost-user, vmm) the host end is the backend's per-connection state, whose
``fwd_cnt`` advances when it forwards bytes to the host application's Unix
socket (Firecracker csm/connection.rs, vhost-device-vsock vsock_conn.rs).
"""

from __future__ import annotations

from collections import deque

__all__ = ["Pkt", "End", "Conn", "unix_writable", "EVERY_READ", "REQUEST", "RESPONSE", "RST", "SHUTDOWN", "RW", "CREDIT_UPDATE",
           "CREDIT_REQUEST", "OP_NAMES", "HDR_BYTES", "SEQ_EOM"]

# include/uapi/linux/virtio_vsock.h: enum virtio_vsock_op
REQUEST, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST = 1, 2, 3, 4, 5, 6, 7
OP_NAMES = {1: "REQUEST", 2: "RESPONSE", 3: "RST", 4: "SHUTDOWN", 5: "RW", 6: "CREDIT_UPDATE",
            7: "CREDIT_REQUEST"}
HDR_BYTES = 44  # sizeof(struct virtio_vsock_hdr), packed
SEQ_EOM = 1  # VIRTIO_VSOCK_SEQ_EOM
SHUTDOWN_BOTH = 3  # VIRTIO_VSOCK_SHUTDOWN_RCV | _SEND
HOST_CID = 2  # VMADDR_CID_HOST


def unix_writable(fill: int, cap: int) -> bool:
    """unix_writable() (net/unix/af_unix.c): a quarter of the socket's sndbuf or less in use - when
    unix_write_space wakes a blocked writer and unix_poll reports EPOLLOUT (profile
    ``uds_write_space_quarter``)."""
    return fill * 4 <= cap


def _succeed(event) -> None:
    event.succeed()


class Pkt:
    """One virtio-vsock packet (header + ``len`` payload bytes)."""

    __slots__ = ("conn", "g2h", "op", "len", "flags", "buf_alloc", "fwd_cnt", "reply")

    def __init__(self, conn, g2h, op, length, flags, buf_alloc, fwd_cnt, reply=False):
        self.conn, self.g2h, self.op, self.len, self.flags = conn, g2h, op, length, flags
        self.buf_alloc, self.fwd_cnt, self.reply = buf_alloc, fwd_cnt, reply


# Before b89d882dc9fc (5.4) every dequeue sent a CREDIT_UPDATE: a threshold above any free space
# (End.wants_credit_update).
EVERY_READ = 1 << 62


class End:
    """One side's credit state and receive queue.

    ``window_min``: since upstream 8ee784fdf006 (2026) Linux caps the send
    window at min(peer_buf_alloc, own buf_alloc) (profile ``linux_tx_window_min``:
    false for the older kernels of the measured setups); userspace backends use
    the peer's value alone.
    """

    __slots__ = ("buf_alloc", "fwd_cnt", "last_fwd_cnt", "tx_cnt", "peer_buf_alloc", "peer_fwd_cnt",
                 "rx_bytes", "buf_used", "rxq", "reader", "writer", "threshold", "on_drain", "window_min",
                 "drops", "max_in_flight", "credit_updates", "seqpacket", "msgs_ready", "waker", "lock_start", "lock_end", "lock_pool")

    def __init__(self, buf_alloc: int, threshold: int, on_drain: bool, window_min: bool, seqpacket: bool):
        self.buf_alloc = buf_alloc
        self.fwd_cnt = self.last_fwd_cnt = self.tx_cnt = 0
        self.peer_buf_alloc = 0  # learned from the REQUEST/RESPONSE headers
        self.peer_fwd_cnt = 0
        self.rx_bytes = self.buf_used = 0
        self.rxq: deque = deque()  # [remaining, length, eom] per queued skb
        self.reader = self.writer = None  # the SimPy event a sleeping app waits on
        self.threshold, self.on_drain, self.window_min = threshold, on_drain, window_min
        self.seqpacket = seqpacket
        self.drops = 0  # packets dropped for lack of buffer space (a correct peer never causes one)
        self.max_in_flight = 0  # max of tx_cnt - peer_fwd_cnt seen (credit check)
        self.credit_updates = 0
        self.msgs_ready = 0  # complete SEQPACKET messages queued
        self.waker = _succeed  # wakes a sleeping app (the model sets one with the wake-up latency)
        # lock_sock owned by the app (sock_owned_by_user) from lock_start to lock_end: its
        # send()/recv() charge runs under the socket lock (vsock_connectible_sendmsg/recvmsg) but
        # for the syscall's entry/exit and the app's loop between calls; Thread.run sets them
        self.lock_start = self.lock_end = 0.0
        self.lock_pool = None  # the CPU pool the owner ran on (model/cpu.CpuPool)

    def credit(self) -> int:
        """virtio_transport_has_space(): bytes this end may still send."""
        window = self.peer_buf_alloc
        if self.window_min and self.buf_alloc < window:
            window = self.buf_alloc
        c = window - (self.tx_cnt - self.peer_fwd_cnt)
        return c if c > 0 else 0

    def take_credit(self, n: int) -> None:
        """virtio_transport_get_credit(): reserve ``n`` bytes (tx_cnt += n)."""
        self.tx_cnt += n
        inflight = self.tx_cnt - self.peer_fwd_cnt
        if inflight > self.max_in_flight:
            self.max_in_flight = inflight

    def stamp(self, pkt: Pkt) -> Pkt:
        """virtio_transport_inc_tx_pkt(): every packet piggybacks buf_alloc and fwd_cnt."""
        pkt.buf_alloc, pkt.fwd_cnt = self.buf_alloc, self.fwd_cnt
        self.last_fwd_cnt = self.fwd_cnt
        return pkt

    def space_update(self, pkt: Pkt) -> None:
        """virtio_transport_space_update(): learn the peer's credit, wake a blocked sender."""
        self.peer_buf_alloc, self.peer_fwd_cnt = pkt.buf_alloc, pkt.fwd_cnt
        w = self.writer
        if w is not None and self.credit() > 0:
            self.writer = None
            self.waker(w)

    def enqueue(self, pkt: Pkt) -> bool:
        """virtio_transport_recv_enqueue(): accept if buf_used + len <= buf_alloc, else drop."""
        n = pkt.len
        if self.buf_used + n > self.buf_alloc:
            self.drops += 1
            return False
        self.buf_used += n
        self.rx_bytes += n
        eom = bool(pkt.flags & SEQ_EOM)
        self.rxq.append([n, n, eom])
        if eom:
            self.msgs_ready += 1
        r = self.reader
        if r is not None and (not self.seqpacket or self.msgs_ready):
            self.reader = None
            self.waker(r)
        return True

    def readable(self) -> int:
        """Bytes a recv() would return now (SEQPACKET: only whole messages)."""
        if self.seqpacket:
            if not self.msgs_ready:
                return 0
            total = 0
            for rem, _n, eom in self.rxq:
                total += rem
                if eom:
                    break
            return total
        return self.rx_bytes

    def dequeue(self, want: int) -> int:
        """Copy up to ``want`` bytes out; fwd_cnt advances per fully consumed skb
        (virtio_transport_dec_rx_pkt).  SEQPACKET dequeues exactly one message."""
        got = 0
        rxq = self.rxq
        while rxq and (got < want or self.seqpacket):
            skb = rxq[0]
            take = skb[0] if self.seqpacket else min(skb[0], want - got)
            skb[0] -= take
            got += take
            if skb[0] == 0:
                rxq.popleft()
                self.fwd_cnt += skb[1]
                self.buf_used -= skb[1]
                if skb[2]:
                    self.msgs_ready -= 1
                    if self.seqpacket:
                        break
        self.rx_bytes -= got
        return got

    def wants_credit_update(self) -> bool:
        """virtio_transport_stream_do_dequeue(), called after a dequeue: update when the peer's
        stale view of our free space drops below the threshold, or (Linux >= 93b80887668) when
        the reader drained the queue.  SEQPACKET updates after every message
        (virtio_transport_seqpacket_do_dequeue).  Before b89d882dc9fc (5.4) the update was
        unconditional ("Send a credit pkt to peer"): one per dequeue, even one that consumed no
        whole skb and so left fwd_cnt where the last update put it (threshold EVERY_READ)."""
        if self.threshold >= EVERY_READ:
            return True
        delta = self.fwd_cnt - self.last_fwd_cnt
        if delta == 0:
            return False
        if self.seqpacket:
            return True
        return self.buf_alloc - delta < self.threshold or (self.on_drain and self.rx_bytes < 1)


class Conn:
    """One connection: both ends, its device queue, its ports, and what its apps did."""

    __slots__ = ("id", "flow", "q", "g", "h", "guest_port", "host_port", "g_initiates",
                 "closed", "sent", "recv", "uds_g2h", "txbuf", "uds_h2g", "uds_cap", "ctrl_h2g",
                 "in_rxq", "credit_requested", "userspace", "host_reader_wake", "host_writer_wake",
                 "connect_wait", "type", "txbuf_cap", "host_waker", "g_app_pool", "selects")

    def __init__(self, cid, flow, q, g: End, h: End, guest_port, host_port, g_initiates, socket_type):
        self.id, self.flow, self.q, self.g, self.h = cid, flow, q, g, h
        self.guest_port, self.host_port, self.g_initiates = guest_port, host_port, g_initiates
        self.type = socket_type  # 1 STREAM, 2 SEQPACKET (hdr.type)
        self.closed = False
        self.sent = [0, 0]  # payload bytes accepted by send(): [g2h, h2g]
        self.recv = [0, 0]  # payload bytes returned by recv() to the receiving app
        self.selects = [0, 0]  # select() calls of an iperf3 app (apps.MULTISEND): [guest, host]
        # userspace backends: the host app's AF_UNIX socket and the backend's LocalTxBuf
        self.userspace = False
        self.uds_g2h = 0  # bytes in the UDS towards the host app
        self.txbuf = 0  # bytes the backend could not write yet (64 KiB LocalTxBuf / CONN_TX_BUF)
        self.txbuf_cap = 65536
        self.uds_h2g = 0  # bytes the host app wrote, not yet read by the backend
        self.uds_cap = 212992
        self.ctrl_h2g: deque = deque()  # control packets the backend owes the guest
        self.in_rxq = False
        self.credit_requested = False
        self.host_reader_wake = None
        self.host_writer_wake = None
        self.connect_wait = None
        self.host_waker = _succeed  # wakes the host app blocked on its Unix socket
        # the CPU pool of the guest application's thread (one vCPU of a pinned guest; set by
        # model/apps.ConnApp): driver work on another pool handles its packets cross-vCPU
        self.g_app_pool = None
