"""``vsockbench measure {server,client}``: a thin layer over :mod:`vsockbench.measure`.

Server and client take the same flags so scripts can pass one set to both;
the server ignores the run flags (the client sends the run to it).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import InputError
from ..measure import procstats
from . import count

DEFAULT_PORT = 5201


def _cid(text: str) -> int:
    from ..measure import VMADDR_CID_ANY

    t = text.strip().lower()
    if t in ("any", "-1"):
        return VMADDR_CID_ANY
    try:
        v = int(t, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"CID {text!r}; expected an integer or 'any'") from None
    if not 0 <= v <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"CID {text!r}; expected 0..2^32-1 or 'any'")
    return v


def _port(text: str) -> int:
    from ..measure import VMADDR_PORT_ANY

    t = text.strip().lower()
    if t in ("any", "-1"):
        return VMADDR_PORT_ANY
    try:
        v = int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r}; expected an integer or 'any'") from None
    if not 0 <= v <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"port {text!r}; expected 0..2^32-1 or 'any'")
    return v


MAX_TIMEOUT = 86400.0  # the server caps its kernel timeouts at a day too


def _timeout(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}; expected seconds, a number") from None
    if not 0 < v <= MAX_TIMEOUT:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r}; expected seconds, more than 0 and at most {MAX_TIMEOUT:g} (a day)")
    return v


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transport", choices=("vsock", "unix", "tcp"), required=True)
    p.add_argument("--host", default="127.0.0.1", help="TCP address (default: loopback only)")
    p.add_argument("--port", type=_port, default=None, help=f"TCP/vsock port or 'any' (default {DEFAULT_PORT}; --local: any)")
    p.add_argument("--cid", type=_cid, default=None, help="vsock CID: server binds it (default any), client connects to it")
    p.add_argument("--path", default="/tmp/vsockbench-measure.sock", help="AF_UNIX socket path")
    p.add_argument("--timeout", type=_timeout, default=10.0, help="socket timeout in seconds (nothing waits longer)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    run = p.add_argument_group("run (the client decides; the server accepts and ignores these)")
    run.add_argument("--workload", choices=("stream", "pingpong", "trace"), default="stream")
    run.add_argument("--direction", choices=("g2h", "h2g"), default="g2h", help="g2h: client to server; h2g: server to client")
    run.add_argument("--msg-bytes", type=int, default=65536)
    run.add_argument("--reply-bytes", type=int, default=0, help="ping-pong answer size (default: --msg-bytes); another size is refused with --out, "
                          "as the measured-run schema has one msg_bytes per row")
    run.add_argument("--connections", type=int, default=1)
    run.add_argument("--duration", type=float, default=None, help="measured seconds (default 5; trace: the trace)")
    run.add_argument("--warmup", type=float, default=0.0, help="seconds run but not measured")
    run.add_argument("--trace", default=None, help="trace file for --workload trace")
    run.add_argument("--replay", choices=("open", "closed"), default="closed")
    run.add_argument("--bind-cid", type=_cid, default=None, help="vsock client: bind this own CID first (pick a device)")
    run.add_argument("--local", action="store_true", help="run a server in a child process on this machine")
    run.add_argument("--out", default=None, help="measured-run CSV (+ .messages.parquet, .meta.json)")
    run.add_argument("--append", action="store_true", help="append rows to --out instead of replacing it")
    run.add_argument("--setup", default=None, help="setup name (default <backend>/local/<hostname>-<kernel>)")
    run.add_argument("--backend", default=None, help="backend column (default: transport; vsock: vhost, local vsock: loopback)")
    run.add_argument("--source-id", default=None, help="source_id column (default: --out file stem)")
    run.add_argument("--vcpus", type=count, default=None, help="guest vCPUs for the vcpus column")
    run.add_argument("--guest-stats", action="store_true",
                     help="also write the client machine's CPU work (cpu_guest_work, /proc/stat) over the window")
    run.add_argument("--irq-match", metavar="REGEX", default=None,
                     help="with --guest-stats: interrupts per second (irq_rate) on the /proc/interrupts lines "
                          "matching REGEX, e.g. 'virtio3-' for the vsock device's vectors")


def register(subparsers) -> None:
    p = subparsers.add_parser("measure", help="measure real sockets (vsock, unix, tcp) into measured-run rows")
    sub = p.add_subparsers(dest="measure_role", metavar="{server,client}")
    sub.required = True
    s = sub.add_parser("server", help="listen and serve measurement runs")
    _add_common(s)
    s.add_argument("--once", action="store_true", help="exit after one run")
    s.set_defaults(func=server_handler)
    c = sub.add_parser("client", help="run one measurement against a server (or --local)")
    _add_common(c)
    c.set_defaults(func=client_handler)


def _endpoint(args, role: str):
    from ..measure import VMADDR_CID_ANY, Endpoint

    port = args.port if args.port is not None else (0 if args.local else DEFAULT_PORT)
    if args.transport == "vsock":
        if role == "client" and args.cid is None and not args.local:
            raise InputError("--cid: required for a vsock client; expected the server's CID (2 = host)")
        cid = VMADDR_CID_ANY if args.cid is None else args.cid
        return Endpoint("vsock", port=port, cid=cid, bind_cid=args.bind_cid if role == "client" else None)
    if args.transport == "unix":
        return Endpoint("unix", path=args.path)
    return Endpoint("tcp", host=args.host, port=port)


def server_handler(args) -> int:
    from ..measure import serve

    args.local = False
    ep = _endpoint(args, "server")

    def ready(real) -> None:
        if not args.quiet:
            print(f"vsockbench measure server listening on {real.describe()}", file=sys.stderr, flush=True)

    def log(msg: str) -> None:
        print(f"vsockbench measure server: {msg}", file=sys.stderr, flush=True)

    serve(ep, once=args.once, timeout=args.timeout, ready=ready, log=log)
    return 0


def _spec(args):
    from ..measure import RunSpec

    run_id = 0  # measure() draws one from OS entropy
    if args.workload == "trace":
        if not args.trace:
            raise InputError("--trace: required with --workload trace; expected a trace file")
        if not os.path.exists(args.trace):
            raise InputError(f"{args.trace}: no such trace file")
        try:
            from ..trace import read_trace
        except ImportError:
            raise InputError("--trace: trace support (vsockbench.trace.read_trace) is not in this build") from None
        from ..measure.protocol import trace_spec

        return trace_spec(read_trace(args.trace), replay=args.replay, warmup=args.warmup,
                          duration=args.duration, run_id=run_id, path=args.trace)
    if args.trace:
        raise InputError("--trace: only valid with --workload trace")
    return RunSpec(
        workload=args.workload,
        direction=args.direction,
        msg_bytes=args.msg_bytes,
        reply_bytes=args.reply_bytes,
        connections=args.connections,
        warmup=args.warmup,
        duration=5.0 if args.duration is None else args.duration,
        run_id=run_id,
    )


def _check_guest_stats(args) -> None:
    """--guest-stats needs /proc; --irq-match must be a regular expression that matches a
    /proc/interrupts line now (checked before the run, so none is wasted)."""
    if args.irq_match is None:
        if args.guest_stats and procstats.sample() is None:
            raise InputError("--guest-stats: /proc/stat or /proc/interrupts not readable; expected a Linux machine")
        return
    if not args.guest_stats:
        raise InputError("--irq-match: only with --guest-stats")
    try:
        rx = re.compile(args.irq_match)
    except re.error as exc:
        raise InputError(f"--irq-match: {args.irq_match!r} is not a regular expression ({exc})") from None
    now = procstats.sample()
    if now is None:
        raise InputError("--guest-stats: /proc/stat or /proc/interrupts not readable; expected a Linux machine")
    if not any(rx.search(k) for k in now["irqs"]):
        virtio = [k for k in now["irqs"] if "virtio" in k] or list(now["irqs"])[:8]
        raise InputError(f"--irq-match: {args.irq_match!r} matches no /proc/interrupts line; expected one of "
                         f"the lines' keys, e.g. {' | '.join(virtio)}")


def _check_out(out: str) -> None:
    """The measured-run CSV and its two sidecars can be written: checked before the run, which a
    bad path would otherwise waste (measure() itself refuses a directory as --out, in its words)."""
    from ..atomic import check_file_target
    from ..measure.output import sidecar_paths

    if not os.path.isdir(out):
        check_file_target(out, "--out (the measured-run CSV)")
    for path in sidecar_paths(out):
        check_file_target(path, "a sidecar of --out")


def client_handler(args) -> int:
    from ..measure import measure

    spec = _spec(args)
    _check_guest_stats(args)
    if args.out:
        _check_out(args.out)
    ep = None if args.local else _endpoint(args, "client")
    if args.local and args.transport == "vsock" and args.cid not in (None, 1):
        raise InputError("--cid: --local vsock runs over the loopback CID 1; expected no --cid or --cid 1")
    progress = not args.quiet and sys.stderr.isatty()
    _m, rows = measure(
        spec,
        ep,
        local=args.local,
        transport=args.transport,
        out=args.out,
        setup=args.setup,
        backend=args.backend,
        source_id=args.source_id,
        vcpus=args.vcpus,
        timeout=args.timeout,
        progress=progress,
        append=args.append,
        guest_stats=args.guest_stats,
        irq_match=args.irq_match,
    )
    if not args.quiet:
        for r in rows:
            print(f"{r['workload']} {r['direction']} {r['metric']} {r['stat']} = {r['value']} {r['unit']}")
        if args.out:
            print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0
