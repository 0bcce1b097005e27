"""Applications: the socket calls of both ends, and the flows that drive them.

Every connection gets a :class:`ConnApp`: per direction a FIFO of messages the
sending side will ``send()`` and the same FIFO of what the receiving side
expects to ``recv()`` (a byte stream keeps order, so one queue per direction
matches sends to reads).  A message that is a request carries the size of its
reply; the receiver answers after the think time.  Drivers fill the FIFOs:
``stream`` keeps the sender backlogged (iperf), ``pingpong``/``rpc`` issue a
request per reply (closed loop) or at a rate (open loop), ``trace`` replays
a trace's operations at their timestamps.

Socket calls follow af_vsock.c: ``vsock_connectible_sendmsg`` sleeps only at
zero credit and sends whatever credit allows, split into packets of at most
64 KiB (``virtio_transport_send_pkt_info``), the copy in the sender's
context; ``recvmsg`` copies out and may send a CREDIT_UPDATE.  With a
userspace backend the host app talks to a Unix socket instead.
"""

from __future__ import annotations

from collections import deque

from .copycost import copy_seconds, fixed_s_per_byte, in_flight
from .socket import CREDIT_UPDATE, REQUEST, RW, SEQ_EOM, SHUTDOWN, SHUTDOWN_BOTH, Pkt, unix_writable

__all__ = ["ConnApp", "start_flow"]

G2H, H2G = 0, 1
# Share of a send()/recv() call's fixed cost spent outside lock_sock at each end of its charge
# (syscall entry before lock_sock, exit after release_sock, the app's loop): an estimate; a
# packet the receive path delivers in such a gap does not wait.
LOCK_GAP = 0.25
# iperf3 (and iperf-vsock, its AF_VSOCK fork) runs one select() per loop round
# (iperf_client_api.c iperf_run_client, iperf_server_api.c iperf_run_server): iperf_recv then reads
# one block of each readable stream, iperf_send writes up to test->multisend = 10 blocks
# (iperf_api.c, no rate limit).  A select() on one socket costs about a recv() call's fixed part:
# syscall entry and exit, sock_poll -> vsock_poll (lock_sock; af_vsock.c) or unix_poll (an estimate).
MULTISEND = 10


def zerocopy_allowed(nbytes: int, max_pkt: int, ring_size: int) -> bool:
    """virtio_transport_can_msgzerocopy(): the skb's pages + 1 must fit the TX ring
    (per device since the multi-device RFC 3/5)."""
    pages = -(-min(nbytes, max_pkt) // 4096)
    return pages + 1 <= ring_size


class Msg:
    __slots__ = ("nbytes", "t0", "kind", "reply", "think")

    def __init__(self, nbytes, t0, kind, reply=0, think=0.0):
        self.nbytes, self.t0, self.kind, self.reply, self.think = nbytes, t0, kind, reply, think


class ConnApp:
    """Both applications of one connection."""

    def __init__(self, model, conn, flow, g_thread, h_thread, *, read_limit=None, on_done=None):
        self.m, self.conn, self.flow = model, conn, flow
        self.env = model.env
        self.threads = (g_thread, h_thread)  # index by side: 0 guest, 1 host
        conn.g_app_pool = g_thread.pool
        self.sendq = (deque(), deque())
        self.expect = (deque(), deque())
        self._send_wake = [None, None]
        self._busy = [False, False]  # a direction's sender is mid-send()
        self._recv_wake = [None, None]
        self.read_limit = read_limit
        # on_done(app, direction, msg, t_end) runs when a message is fully read; it may return the
        # next Msg the reading thread sends at once (the other way), as a closed-loop client does
        self.on_done = on_done
        self.refill = [None, None]  # stream: callable giving the next message of a direction
        self.prof = conn.q.prof
        self.in_flight = in_flight(conn.q)  # the queue's payload in flight: the copies' footprint
        self.max_pkt = self.prof.max_pkt_bytes
        # per side (0 guest, 1 host): the copy rate when it is constant for the run, else None (by the
        # footprint, copycost.copy_seconds per copy)
        p = self.prof
        self.copy_fixed = (fixed_s_per_byte(p.guest_copy_ns_per_kib, p), fixed_s_per_byte(p.host_copy_ns_per_kib, p))
        # per side, constant for the run: send() (call s, per packet s, copy ns/KiB), recv() (call s,
        # copy ns/KiB); a host send's per-packet cost is the guest's guest_send_per_pkt_ns
        self.send_costs = ((p.guest_send_call_ns * 1e-9, p.guest_send_per_pkt_ns * 1e-9, p.guest_copy_ns_per_kib),
                           (p.host_send_call_ns * 1e-9, p.guest_send_per_pkt_ns * 1e-9, p.host_copy_ns_per_kib))
        self.recv_costs = ((p.guest_recv_call_ns * 1e-9, p.guest_copy_ns_per_kib),
                           (p.host_recv_call_ns * 1e-9, p.host_copy_ns_per_kib))
        # per side (0 guest, 1 host; a direction d is sent by side d, read by side 1 - d): the select()
        # an iperf3 loop round costs, 0 for a plain app
        iperf = flow.app == "iperf3"
        self.select_s = (p.guest_recv_call_ns * 1e-9, p.host_recv_call_ns * 1e-9) if iperf else (0.0, 0.0)
        self._blocks_sent = [0, 0]  # per direction, for the sender's select() every MULTISEND blocks
        self._ready = self.env.event()
        for d in (G2H, H2G):
            self.env.process(self._sender(d))
            self.env.process(self._receiver(d))

    # ------------------------------------------------------------ message FIFOs
    def push(self, d: int, msg: Msg) -> None:
        self.sendq[d].append(msg)
        self._expect(d, msg)
        ev = self._send_wake[d]
        if ev is not None:
            self._send_wake[d] = None
            ev.succeed()

    def _expect(self, d: int, msg: Msg) -> None:
        self.expect[d].append(msg)
        ev = self._recv_wake[d]
        if ev is not None:
            self._recv_wake[d] = None
            ev.succeed()

    def _wait(self, waits, d):
        ev = self.env.event()
        waits[d] = ev
        return ev

    # ------------------------------------------------------------ connection setup
    def connect(self, from_guest: bool):
        """connect(): REQUEST, then sleep until RESPONSE (or RST)."""
        m, conn, env = self.m, self.conn, self.env
        th = self.threads[0 if from_guest else 1]
        p = self.prof
        ev = env.event()
        conn.connect_wait = ev
        if from_guest:
            yield th.run(p.guest_send_call_ns * 1e-9)
            th.owe(m.guest_ctrl(conn, REQUEST, sender=th))
        else:
            extra = 2 * p.backend_syscall_ns * 1e-9 if conn.userspace else 0.0  # connect + "CONNECT <port>\n"
            yield th.run(p.host_send_call_ns * 1e-9 + extra)
            m.host_ctrl(conn, REQUEST)
        yield ev
        yield env.timeout(self._wake_latency(from_guest))
        if not self._ready.triggered:
            self._ready.succeed()

    def close(self, from_guest: bool):
        """close(): SHUTDOWN(RCV|SEND); the peer answers RST."""
        th = self.threads[0 if from_guest else 1]
        yield th.run((self.prof.guest_send_call_ns if from_guest else self.prof.host_send_call_ns) * 1e-9)
        if from_guest:
            th.owe(self.m.guest_ctrl(self.conn, SHUTDOWN, SHUTDOWN_BOTH, sender=th))
        else:
            self.m.host_ctrl(self.conn, SHUTDOWN, SHUTDOWN_BOTH)

    def _wake_latency(self, guest: bool) -> float:
        p = self.prof
        return (p.guest_wakeup_latency_ns if guest else p.host_wakeup_latency_ns) * 1e-9 * self.m.jitter()

    # ------------------------------------------------------------ senders
    def _sender(self, d: int):
        yield self._ready
        q = self.sendq[d]
        send = self._send_vsock if (d == G2H or not self.conn.userspace) else self._send_uds
        busy = self._busy
        while True:
            if busy[d]:  # the receiver is answering inline on this direction
                yield self._wait(self._send_wake, d)
                continue
            if not q:
                refill = self.refill[d]
                if refill is not None:
                    msg = refill()
                    if msg is not None:
                        self.push(d, msg)
                        continue
                yield self._wait(self._send_wake, d)
                continue
            msg = q.popleft()
            busy[d] = True
            pre = 0.0
            if self.select_s[d]:  # iperf3: a select() before every MULTISEND blocks (d: the sending side)
                if self._blocks_sent[d] % MULTISEND == 0:
                    self.conn.selects[d] += 1
                    pre = self.select_s[d]
                self._blocks_sent[d] += 1
            yield from send(d, msg.nbytes, pre)
            busy[d] = False

    def _send_vsock(self, d: int, nbytes: int, pre: float = 0.0):
        """vsock_connectible_sendmsg(): partial sends at any credit, <= 64 KiB packets.  ``pre``:
        CPU the app spends right before the call (iperf3's select()), charged with its first run."""
        conn, env = self.conn, self.env
        from_guest = d == G2H
        end = conn.g if from_guest else conn.h
        th = self.threads[0 if from_guest else 1]
        p = self.prof
        call, per_pkt, copy_kib = self.send_costs[d]  # d: G2H = 0 = the guest sends
        per_byte = self.copy_fixed[d]  # None: by the data in flight, per packet (copycost.py)
        if from_guest and self.flow.zerocopy and zerocopy_allowed(nbytes, self.max_pkt, conn.q.ring):
            per_byte = p.guest_pin_ns_per_page * 1e-9 / 4096  # pins pages instead of the user->skb copy
        seq = end.seqpacket
        cost = pre + call
        gap = call * LOCK_GAP  # the part of a call outside lock_sock, at each end of its charge
        remaining = nbytes
        max_pkt = self.max_pkt
        q = conn.q
        if from_guest:
            th.enter()  # vsock_connectible_sendmsg: no schedule() before it returns or sleeps (PREEMPT_NONE)
        while remaining:
            c = end.credit()
            if c == 0:  # sleep in wait_woken until sk_write_space (sk_wait_event releases lock_sock)
                if cost:
                    yield th.run(cost, end, gap)
                    cost = 0.0
                if end.credit() == 0:
                    ev = env.event()
                    end.writer = ev
                    yield ev  # woken by sk_write_space after the wake-up latency
                continue
            n = remaining if remaining < c else c
            if n > max_pkt:
                n = max_pkt
            end.take_credit(n)
            remaining -= n
            # the fast path's virtqueue_add_sgs runs in this call, before the kick (GuestQueue.xmit)
            fast = from_guest and q.fast_path_open(n, th.pool)
            if fast:
                cost += q.txq_s
            # the copy's rate depends on the data in flight (copycost.py)
            # under lock_sock but for the call's entry/exit (the first packet's charge carries the call)
            yield th.run(cost + per_pkt + copy_seconds(n, per_byte, copy_kib, p, conn, n), end, gap if cost else 0.0)
            cost = 0.0
            pkt = end.stamp(Pkt(conn, from_guest, RW, n, SEQ_EOM if seq and not remaining else 0, 0, 0))
            conn.sent[d] += n
            self.in_flight.bytes += n
            if from_guest:
                th.owe(q.xmit(pkt, th, prepaid=fast))
            else:
                q.backend.host_send(pkt, q)
        if from_guest:
            th.leave()

    def _send_uds(self, d: int, nbytes: int, pre: float = 0.0):
        """The host app writes to the userspace backend's Unix socket (blocks when it is full)."""
        conn, env = self.conn, self.env
        th = self.threads[1]
        p = self.prof
        call, _, copy_kib = self.send_costs[1]
        remaining = nbytes
        backend = conn.q.backend
        per_byte = self.copy_fixed[1]
        while remaining:
            room = conn.uds_cap - conn.uds_h2g
            if room <= 0:
                ev = env.event()
                conn.host_writer_wake = ev
                yield ev
                continue
            n = remaining if remaining < room else room
            yield th.run(pre + call + copy_seconds(n, per_byte, copy_kib, p, conn, n))
            pre = 0.0
            conn.uds_h2g += n
            conn.sent[d] += n
            self.in_flight.bytes += n
            remaining -= n
            backend.host_data(conn)

    # ------------------------------------------------------------ receivers
    def _receiver(self, d: int):
        env = self.env
        yield self._ready
        expect = self.expect[d]
        to_guest = d == H2G
        recv = self._recv_vsock if (to_guest or not self.conn.userspace) else self._recv_uds
        back = 1 - d
        send_back = self._send_vsock if (back == G2H or not self.conn.userspace) else self._send_uds
        busy = self._busy
        limit = self.read_limit
        total = 0
        while True:
            if not expect:
                yield self._wait(self._recv_wake, d)
                continue
            msg = expect[0]
            got = 0
            # iperf3: a select() before each block it reads, in one run with the block's first
            # read (select() returns and read() follows on the CPU it woke on)
            pre = self.select_s[1 - d]  # 1 - d: the reading side
            if pre:
                self.conn.selects[1 - d] += 1
            while got < msg.nbytes:
                if limit is not None and total >= limit:
                    yield env.event()  # the reader stopped reading: never wakes
                want = msg.nbytes - got
                if limit is not None:
                    want = min(want, limit - total)
                n = yield from recv(d, want, pre)
                pre = 0.0
                got += n
                total += n
            expect.popleft()
            nxt = self._done(d, msg)
            if nxt is None:
                continue
            if busy[back] or self.sendq[back]:
                self.push(back, nxt)
                continue
            # the same thread answers at once (a server's read-then-write, a client's next request):
            # send inline instead of waking the sender process
            self._expect(back, nxt)
            busy[back] = True
            yield from send_back(back, nxt.nbytes)
            busy[back] = False
            ev = self._send_wake[back]
            if ev is not None and self.sendq[back]:
                self._send_wake[back] = None
                ev.succeed()

    def _done(self, d: int, msg: Msg):
        """Record a completed message; return the message the reader sends next, if any."""
        now = self.env._now
        self.m.messages.append((self.conn.flow, self.conn.id, d, msg.kind, msg.nbytes, msg.t0, now))
        nxt = None
        if msg.reply:
            reply = Msg(msg.reply, msg.t0, "rtt")
            if msg.think > 0:
                self.env.process(self._delayed_push(1 - d, reply, msg.think))
            else:
                nxt = reply
        if self.on_done is not None:
            more = self.on_done(self, d, msg, now)
            if more is not None:
                if nxt is not None:
                    self.push(1 - d, nxt)
                nxt = more
        return nxt

    def _delayed_push(self, d, msg, delay):
        yield self.env.timeout(delay)
        self.push(d, msg)

    def _recv_vsock(self, d: int, want: int, pre: float = 0.0):
        conn, env, m = self.conn, self.env, self.m
        to_guest = d == H2G
        end = conn.g if to_guest else conn.h
        side = 0 if to_guest else 1
        th = self.threads[side]
        p = self.prof
        call, copy_kib = self.recv_costs[side]
        avail = end.readable()
        while not avail:
            ev = env.event()
            end.reader = ev
            yield ev  # vsock_data_ready -> woken after the wake-up latency
            avail = end.readable()
        n = avail if (end.seqpacket or avail < want) else want
        # n is still counted in flight
        yield th.run(pre + call + copy_seconds(n, self.copy_fixed[side], copy_kib, p, conn), end,
                     call * LOCK_GAP)  # under lock_sock
        got = end.dequeue(n)
        if end.wants_credit_update():
            end.credit_updates += 1
            if to_guest:
                th.owe(m.guest_ctrl(conn, CREDIT_UPDATE, sender=th))
            else:
                m.host_ctrl(conn, CREDIT_UPDATE)
        conn.recv[d] += got
        self.in_flight.bytes -= got
        return got

    def _recv_uds(self, d: int, want: int, pre: float = 0.0):
        conn, env = self.conn, self.env
        th = self.threads[1]
        p = self.prof
        while not conn.uds_g2h:
            ev = env.event()
            conn.host_reader_wake = ev
            yield ev
        n = min(conn.uds_g2h, want)
        call, copy_kib = self.recv_costs[1]
        yield th.run(pre + call + copy_seconds(n, self.copy_fixed[1], copy_kib, p, conn))
        conn.uds_g2h -= n
        if conn.txbuf and (not self.prof.uds_write_space_quarter or unix_writable(conn.uds_g2h, conn.uds_cap)):
            # the backend's EPOLLOUT (uds_write_space_quarter; profiles.SOURCES)
            conn.q.backend.flush(conn)
        conn.recv[d] += n
        self.in_flight.bytes -= n
        return n


def start_flow(model, flow, index: int):
    """Create the connections of ``flow`` and the processes that drive them."""
    from .drivers import start

    return start(model, flow, index)
