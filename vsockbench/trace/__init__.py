"""Workload traces: format, readers/writers, generators, vsockmon pcap import/export.

File layout
-----------
A trace ``NAME.csv`` (or ``NAME.parquet``) holds the **ops** table; the
**flows** table sits beside it as ``NAME.flows.csv`` (``NAME.flows.parquet``).
:func:`write_trace` writes both; :func:`read_trace` reads both.

ops: one row per application operation

============  =======  ===========================================================
column        type     meaning
============  =======  ===========================================================
time          float    seconds from trace start; non-decreasing within a flow
flow          str      flow name (declared in the flows table)
op            str      connect | send | recv | close
bytes         int      bytes written by ``direction``'s side (send), read (recv);
                       0 for connect/close; 0..1 GiB
reply_bytes   int      send only: > 0 makes the row a request whose peer replies
                       with that many bytes (0 = one-way).  Optional, default 0
think_time    float    the peer's think time before replying, s.  Optional, default 0
direction     str      g2h | h2g: who sends this op's bytes (connect: who
                       connects; close: who closes); the reply goes the other way.
                       Optional, default the flow's direction
============  =======  ===========================================================

A flow is a sequence of connections: ``connect`` opens one, ``close`` ends
it; a ``send`` with no open connection opens one implicitly.  ``recv``
marks the receiving application's read of ``bytes`` (a slow reader);
bytes moved are counted from send rows only.  Parallel connections are
separate flows.

flows: one row per flow (every column but ``flow`` optional)

==========  =============================================  =========================
column      meaning                                        default (no sidecar too)
==========  =============================================  =========================
flow        name                                           -
direction   g2h | h2g: who initiates the connection        first op's direction
socket      stream | seqpacket                             stream
guest_port  guest-side port (u32)                          1024, 1025, ... by order
host_port   host-side port (u32)                           of first appearance
bind_cid    guest CID to bind (a device); empty = default  empty
==========  =============================================  =========================

Validation: every row is checked; the first bad one raises
:class:`~vsockbench.errors.InputError` naming the file, the **data row**
(1-based, header not counted; for CSV also the file line, = data row + 1),
the column and what is expected: missing/unknown columns, empty cells, NaN
or inf, unknown op/direction/socket, negative or non-integer sizes, sizes
above 1 GiB, times outside 0..1e6 s, think times above 3600 s, times that go
backwards within a flow, bytes on connect/close, reply_bytes off send rows.
Large traces are read in chunks (:func:`iter_trace_chunks`).

vsockmon import (:func:`import_pcap`)
-------------------------------------
pcap or pcapng, link type 271.  CID 2 is the host, so ``src_cid == 2`` is
h2g.  A REQUEST opens a connection on its (guest CID, guest port, host
port) and names the initiator; SHUTDOWN/RST closes it (one close op, by the
first sender); RW packets carry bytes: a stream message ends at a packet
shorter than 64 KiB (h2g: and not exactly the 4 KiB guest RX buffer that
vhost splits into), a seqpacket one at EOM; a message followed by one in
the other direction becomes a request with ``reply_bytes`` and a
``think_time`` = gap between them (an upper bound: it includes transit).
CREDIT_UPDATE/REQUEST are counted (:class:`ImportStats`) but not replayed.
Connections with the same guest CID, initiator and listening port form a
flow named ``<initiator>-<guest cid>-<listening port>``; connections that
overlap in time go to lanes ``name.1``, ``name.2``...  Time 0 is the first
packet.  ``bind_cid`` is set only when the capture has several guest CIDs.
"""

from __future__ import annotations

from .generators import GENERATORS, generate, generator_params
from .io import flows_path, iter_trace_chunks, read_flows, read_trace, write_trace
from .packets import PACKET_COLUMNS, ImportStats, packets_to_trace, trace_to_packets
from .pcap import export_pcap, import_pcap, read_pcap, read_pcap_packets
from .schema import Trace, validate_trace
from .summary import format_summary, summarize

__all__ = [
    "GENERATORS",
    "PACKET_COLUMNS",
    "ImportStats",
    "Trace",
    "export_pcap",
    "flows_path",
    "format_summary",
    "generate",
    "generator_params",
    "import_pcap",
    "iter_trace_chunks",
    "packets_to_trace",
    "read_flows",
    "read_pcap",
    "read_pcap_packets",
    "read_trace",
    "summarize",
    "trace_to_packets",
    "validate_trace",
    "write_trace",
]
