"""Trace replay in the model: open/closed loop, reconnects, time scale."""

from __future__ import annotations

import pandas as pd
import pytest

from vsockbench.scenario import scenario_from_dict
from vsockbench.simulate import simulate
from vsockbench.trace import Trace, write_trace


def _trace(tmp_path, rows, flows=None):
    ops = pd.DataFrame(rows, columns=["time", "flow", "op", "bytes", "reply_bytes", "think_time", "direction"])
    fl = flows if flows is not None else pd.DataFrame(
        {"flow": ["a"], "direction": ["g2h"], "socket": ["stream"], "guest_port": [49152], "host_port": [7000],
         "bind_cid": pd.array([None], dtype="Int64")})
    path = tmp_path / "t.csv"
    write_trace(Trace(ops=ops, flows=fl), path)
    return path


def _scenario(path, **flow):
    return scenario_from_dict({"run": {"duration": 0.01, "warmup": 0.0},
                               "device": [{"cid": 3}],
                               "flow": [{"name": "r", "kind": "trace", "trace": str(path), **flow}]})


def test_each_connect_after_close_opens_a_new_connection(tmp_path):
    rows = []
    for k in range(5):
        t = k * 1e-3
        rows += [(t, "a", "connect", 0, 0, 0.0, "g2h"), (t + 1e-5, "a", "send", 300, 900, 0.0, "g2h"),
                 (t + 5e-4, "a", "close", 0, 0, 0.0, "g2h")]
    res = simulate(_scenario(_trace(tmp_path, rows)), keep_model=True)
    conns = [c for c in res.model.conns if c.flow == "r"]
    assert len(conns) == 5
    assert len({c.guest_port for c in conns}) == 5  # fresh ephemeral port per connection
    assert {c.host_port for c in conns} == {7000}
    assert all(c.closed for c in conns)
    rtts = res.messages[res.messages["kind"] == "rtt"]
    assert len(rtts) == 5 and (rtts["bytes"] == 900).all()
    p = res.packets
    assert (p["op"] == 1).sum() == 5 and (p["op"] == 4).sum() == 5 and (p["op"] == 3).sum() == 5
    assert res.checks["conserved"]


@pytest.mark.parametrize("replay", ["open", "closed"])
def test_open_loop_honours_timestamps_closed_loop_waits(tmp_path, replay):
    # 20 requests 10 us apart: faster than a round trip, so closed loop must fall behind the clock
    rows = [(0.0, "a", "connect", 0, 0, 0.0, "g2h")]
    rows += [(1e-4 + i * 1e-5, "a", "send", 512, 512, 0.0, "g2h") for i in range(20)]
    res = simulate(_scenario(_trace(tmp_path, rows), replay=replay))
    rtt = res.messages[res.messages["kind"] == "rtt"].sort_values("t_start")
    assert len(rtt) == 20
    starts = rtt["t_start"].to_numpy()
    if replay == "open":
        assert starts == pytest.approx([1e-4 + i * 1e-5 for i in range(20)])
    else:
        ends = rtt["t_end"].to_numpy()
        assert (starts[1:] >= ends[:-1]).all()  # each waited for the previous reply
        assert starts[-1] > 1e-4 + 19 * 1e-5  # so the last one is behind the trace's clock


def test_time_scale_stretches_the_schedule(tmp_path):
    rows = [(0.0, "a", "connect", 0, 0, 0.0, "g2h"), (1e-3, "a", "send", 100, 0, 0.0, "g2h")]
    res = simulate(_scenario(_trace(tmp_path, rows), time_scale=3.0))
    msg = res.messages[res.messages["kind"] == "msg"]
    assert msg["t_start"].iloc[0] == pytest.approx(3e-3)
