"""Flow drivers: turn a scenario flow into connections and the messages they carry.

* ``stream``: every connection's sender always has the next ``msg_bytes``
  send() ready (iperf3 / uperf).  The side that sends connects.
* ``pingpong`` / ``rpc``: a request of ``msg_bytes`` answered by
  ``reply_bytes``; closed loop (next request when the reply is read) or open
  loop at ``rate`` requests/s per connection (Poisson or fixed spacing; the
  round trip counts from the arrival, so queueing in the app is included).
  The requesting side connects (``h2g2h``: the host, like kata-runtime
  calling the agent).
* ``trace``: each trace flow becomes one connection replaying its operations
  (see :func:`_start_trace`).
"""

from __future__ import annotations

from .apps import G2H, H2G, ConnApp, Msg

__all__ = ["start"]

EPHEMERAL_GUEST = 49152  # af_vsock.c autobind starts above LAST_RESERVED_PORT at random
EPHEMERAL_HOST_UDS = 1 << 30  # Firecracker muxer: host-initiated local ports start at 2^30
STAGGER = 10e-6  # s: connections of one flow start spread over this much, so they are not in lockstep


def _port(flow, index: int) -> int:
    return flow.port if flow.port is not None else 1024 + 100 * index


def _make(model, flow, index, i, g_initiates, guest_port=None, host_port=None, socket_port=None, threads=None):
    sc = model.scenario
    dev = sc.device_for(flow)
    listen = socket_port if socket_port is not None else _port(flow, index)
    conn_id = len(model.conns)
    if g_initiates:
        gp = guest_port if guest_port is not None else EPHEMERAL_GUEST + conn_id
        hp = host_port if host_port is not None else listen
    else:
        gp = guest_port if guest_port is not None else listen
        base = EPHEMERAL_HOST_UDS if dev.backend != "vhost" else EPHEMERAL_GUEST
        hp = host_port if host_port is not None else base + conn_id
    vcpu = (flow.first_vcpu + i) % sc.guest.vcpus  # the pinned vCPU (a free guest ignores it)
    q = model.steer(dev, flow, i, gp, hp, vcpu)
    conn = model.new_conn(flow, dev, q, gp, hp, g_initiates)
    if threads is not None:  # a replayed flow's later connections keep its application threads
        return (conn, *threads)
    g_th = model.thread("guest", f"g:app-{flow.name}-{i}", vcpu)
    h_th = model.thread("host", f"h:app-{flow.name}-{i}")
    return conn, g_th, h_th


def start(model, flow, index: int) -> None:
    if flow.kind == "trace":
        _start_trace(model, flow, index)
        return
    env, rng = model.env, model.rng
    for i in range(flow.connections):
        if flow.kind == "stream":
            d = G2H if flow.direction == "g2h" else H2G
            g_init = d == G2H
        else:
            d = H2G if flow.direction == "h2g2h" else G2H  # the request's direction
            g_init = d == G2H
        conn, g_th, h_th = _make(model, flow, index, i, g_init)
        app = ConnApp(model, conn, flow, g_th, h_th, read_limit=flow.read_limit_bytes)
        delay = flow.start + STAGGER * rng.random()
        env.process(_run_conn(model, app, flow, d, g_init, delay))


def _run_conn(model, app, flow, d, g_init, delay):
    env = model.env
    yield env.timeout(delay)
    yield from app.connect(g_init)
    if flow.kind == "stream":
        size = flow.msg_bytes
        app.refill[d] = lambda: Msg(size, env.now, "msg")
        app.push(d, Msg(size, env.now, "msg"))
        return
    req, reply, think = flow.msg_bytes, flow.reply, flow.think_time
    if flow.rate <= 0:  # closed loop: the next request when the reply has been read
        def on_done(a, dd, msg, now):
            if msg.kind == "rtt":  # the reply is in: the client thread sends the next request
                return Msg(req, now, "req", reply, think)
            return None

        app.on_done = on_done
        app.push(d, Msg(req, env.now, "req", reply, think))
        return
    rng = model.rng
    mean = 1.0 / flow.rate
    while True:
        gap = rng.exponential(mean) if flow.arrival == "poisson" else mean
        yield env.timeout(gap)
        app.push(d, Msg(req, env.now, "req", reply, think))


# ---------------------------------------------------------------------------- trace replay

def _start_trace(model, flow, index: int) -> None:
    """Replay a trace (vsockbench.trace): each trace flow is a sequence of connections
    (``connect ... close``, then possibly ``connect`` again), replayed by one process.

    Open loop: each operation is issued at ``start + time * time_scale`` (a
    sender still busy with earlier operations queues it, and the latency
    counts from the scheduled time).  Closed loop: each operation waits for
    the previous one of its flow to finish (its reply read, for a request),
    then for its own timestamp (fio iolog / tcpreplay semantics).  A close
    waits for the flow's outstanding messages in both modes (a graceful close).
    """
    from ..trace import read_trace

    trace = model.traces.get(flow.trace)
    if trace is None:
        trace = model.traces[flow.trace] = read_trace(flow.trace)
    ops = trace.ops
    flows = trace.flows.set_index("flow") if len(trace.flows) else None
    names = [flow.trace_flow] if flow.trace_flow else list(dict.fromkeys(ops["flow"].tolist()))
    for i, name in enumerate(names):
        rows = ops[ops["flow"] == name]
        decl = flows.loc[name] if flows is not None and name in flows.index else None
        init = (decl["direction"] if decl is not None else
                (rows["direction"].iloc[0] if len(rows) else flow.direction))
        ports = (int(decl["guest_port"]), int(decl["host_port"])) if decl is not None else None
        records = list(zip(rows["time"].tolist(), rows["op"].tolist(), rows["bytes"].tolist(),
                           rows["reply_bytes"].tolist(), rows["think_time"].tolist(),
                           rows["direction"].tolist()))
        model.env.process(_replay(model, flow, index, i, init == "g2h", ports, records))


def _replay(model, flow, index, lane, g_init, ports, records):
    env = model.env
    scale, closed = flow.time_scale, flow.replay == "closed"
    outstanding = [0]
    idle = [None]
    app = None
    opened = 0
    threads = None

    def on_done(a, d, msg, now):
        if msg.kind in ("rtt", "msg") and outstanding[0] > 0:
            outstanding[0] -= 1
            if outstanding[0] == 0 and idle[0] is not None:
                ev, idle[0] = idle[0], None
                ev.succeed()
        return None

    def drained():
        while outstanding[0]:
            idle[0] = env.event()
            yield idle[0]

    for t, op, nbytes, reply, think, direction in records:
        at = flow.start + t * scale
        if closed:
            yield from drained()
        if at > env.now:
            yield env.timeout(at - env.now)
        if op == "recv":
            continue  # readers read eagerly; the peer's sends imply the reads
        if op == "close":
            if app is not None:
                yield from drained()
                yield from app.close(g_init)
                app = None
            continue
        if app is None:  # connect (explicit, or implied by a send on a closed flow)
            # the first connection keeps the trace's ports; later ones get a fresh ephemeral port
            kw = {}
            if ports is not None:
                kw = ({"guest_port": ports[0], "host_port": ports[1]} if opened == 0 else
                      ({"host_port": ports[1]} if g_init else {"guest_port": ports[0]}))
            conn, g_th, h_th = _make(model, flow, index, lane, g_init, threads=threads, **kw)
            threads = (g_th, h_th)
            app = ConnApp(model, conn, flow, g_th, h_th, on_done=on_done)
            opened += 1
            yield from app.connect(g_init)
        if op == "send" and nbytes > 0:
            d = G2H if direction == "g2h" else H2G
            outstanding[0] += 1
            # open loop: latency counts from the schedule (queueing included, no coordinated
            # omission); closed loop: from the moment the op could be issued
            t0 = env.now if closed else at
            app.push(d, Msg(int(nbytes), t0, "req" if reply else "msg", int(reply), float(think)))
