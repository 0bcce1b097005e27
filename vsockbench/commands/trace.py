"""``vsockbench trace {generate,import,export,show}``: a thin layer over vsockbench.trace."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from . import finite, seed

_PCAP_EXT = (".pcap", ".pcapng", ".cap")
_EXPORT_EXT = (".pcap", ".cap")  # what `trace show`/`import` take as a capture, minus pcapng


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "trace", help="generate, import (vsockmon pcap), export and inspect workload traces")
    sub = p.add_subparsers(dest="trace_command", metavar="ACTION")
    sub.required = True

    from ..trace.generators import GENERATORS

    g = sub.add_parser("generate", help="write a seeded synthetic trace",
                       description="Write a seeded synthetic trace; -p KEY=VALUE (repeatable) "
                       "sets a generator parameter (see the generator's docstring).")
    g.add_argument("kind", choices=sorted(GENERATORS), metavar="KIND",
                   help=f"one of: {', '.join(GENERATORS)}")
    g.add_argument("-p", "--param", dest="params", action="append", default=[],
                   metavar="KEY=VALUE", help="generator parameter (repeatable)")
    g.add_argument("--seed", type=seed, default=1)
    g.add_argument("--duration", type=finite, default=1.0, help="simulated seconds (default 1)")
    g.add_argument("--out", required=True, help="trace file (.csv or .parquet)")
    g.set_defaults(func=_generate)

    i = sub.add_parser("import", help="vsockmon capture (pcap/pcapng, link type 271) -> trace")
    i.add_argument("capture")
    i.add_argument("--out", required=True, help="trace file (.csv or .parquet)")
    i.add_argument("--no-pair-replies", action="store_true",
                   help="keep replies as separate one-way sends")
    i.set_defaults(func=_import)

    e = sub.add_parser("export", help="packet records (packets.parquet) or a trace -> pcap",
                       description="Write a LINKTYPE_VSOCK pcap from a simulation's packet "
                       "records (packets.parquet) or from a trace (ideal packets).")
    e.add_argument("input", help="packets.parquet, or a trace .csv/.parquet")
    e.add_argument("--out", required=True, help="capture file (.pcap)")
    e.add_argument("--payload", choices=("omit", "zeros"), default="omit",
                   help="omit payload bytes (orig_len kept) or write zeros (default omit)")
    e.set_defaults(func=_export)

    s = sub.add_parser("show", help="summarise a trace or a vsockmon capture")
    s.add_argument("trace")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=_show)


def _parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"generator parameter {item!r}; expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _check_trace_out(out: str) -> None:
    """Before the trace is made or read: write_trace's two files (ops and the flows sidecar) can be written."""
    from ..atomic import check_file_target
    from ..trace import flows_path

    check_file_target(out, "--out (the trace)")
    check_file_target(flows_path(out), "the flows sidecar of --out")


def _generate(args) -> int:
    from ..trace import generate, summarize, write_trace

    _check_trace_out(args.out)
    tr = generate(args.kind, seed=args.seed, duration=args.duration,
                  **_parse_params(args.params))
    path = write_trace(tr, args.out)
    s = summarize(tr)
    print(f"wrote {path} ({s['ops']} ops, {len(s['flows'])} flows, {s['bytes_total']} bytes, "
          f"{s['duration_s']:.4f} s)")
    return 0


def _import(args) -> int:
    from ..trace import read_pcap, write_trace

    _check_trace_out(args.out)
    tr, st = read_pcap(args.capture, pair_replies=not args.no_pair_replies)
    path = write_trace(tr, args.out)
    ops = ", ".join(f"{k} {v}" for k, v in st.by_op.items())
    print(f"wrote {path}: {len(tr.flows)} flows, {st.connections} connections, "
          f"{len(tr.ops)} ops from {st.packets} packets ({ops})")
    print(f"credit packets counted, not replayed: {st.credit_packets}; payload bytes "
          f"g2h {st.payload_bytes.get('g2h', 0)}, h2g {st.payload_bytes.get('h2g', 0)}; "
          f"skipped {st.skipped}; open at capture start {st.open_at_start}; "
          f"refused {st.refused}")
    return 0


def _load_packets_or_trace(path: Path):
    """packets.parquet (simulator records) or a trace file -> packet records."""
    from ..trace import read_trace, trace_to_packets
    from ..trace.io import require_file
    from ..trace.packets import PACKET_COLUMNS

    require_file(path, "packets.parquet or a trace .csv/.parquet")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = set(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:  # pyarrow raises assorted types on junk files
            raise InputError(f"not a valid Parquet file ({' '.join(str(exc).split())[:120]})",
                             path=str(path)) from None
        if {"src_cid", "dst_cid", "op", "len"} <= names:
            import pandas as pd

            df = pd.read_parquet(path)
            missing = [c for c in PACKET_COLUMNS if c not in df.columns
                       and c not in ("flow", "conn")]
            if missing:
                raise InputError(f"missing column '{missing[0]}'; expected packet records",
                                 path=str(path))
            return df
    return trace_to_packets(read_trace(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _check_export_out(src: Path, out: Path) -> None:
    """Refused before anything is read: an --out that would overwrite the input (the atomic write
    would replace it whole with pcap bytes), that names another format than the pcap written, or
    that cannot be written."""
    from ..atomic import check_file_target
    from ..trace import flows_path

    for inp in (src, flows_path(src)):
        if _same_file(inp, out):
            raise InputError(f"--out: {out} is the input {inp}; expected a new capture file path "
                             "(export would overwrite its input)")
    if out.suffix.lower() not in _EXPORT_EXT:
        raise InputError(f"--out: {out} has extension '{out.suffix or '(none)'}'; expected "
                         f"{' or '.join(_EXPORT_EXT)} (export writes a classic nanosecond pcap, not pcapng)")
    check_file_target(out, "--out (the capture)")


def _export(args) -> int:
    from ..trace import export_pcap
    from ..trace.packets import validate_packets

    src = Path(args.input)
    _check_export_out(src, Path(args.out))
    packets = _load_packets_or_trace(src)
    validate_packets(packets, path=str(src))
    out = export_pcap(packets, args.out, payload=args.payload)
    print(f"wrote {out}: {len(packets)} packets, {int(packets['len'].sum())} payload bytes "
          f"(payload {args.payload})")
    return 0


def _show(args) -> int:
    from ..trace import format_summary, read_pcap, read_trace, summarize

    path = Path(args.trace)
    stats = None
    if path.suffix.lower() in _PCAP_EXT:
        tr, st = read_pcap(path)
        stats = st.as_dict()
    else:
        tr = read_trace(path)
    s = summarize(tr)
    if stats is not None:
        s["import"] = stats
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_summary(s, title=f"trace {path}"))
        if stats is not None:
            print(f"capture: {stats['packets']} packets, credit packets {stats['credit_packets']} "
                  f"(counted, not replayed), skipped {stats['skipped']}")
    return 0
