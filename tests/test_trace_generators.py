"""Generators: seeded, deterministic, small, and shaped as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vsockbench.errors import InputError
from vsockbench.trace import GENERATORS, generate, generator_params, summarize, validate_trace


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_deterministic_valid_and_small(kind):
    a = generate(kind, seed=11, duration=1.0)
    b = generate(kind, seed=11, duration=1.0)
    c = generate(kind, seed=12, duration=1.0)
    pd.testing.assert_frame_equal(a.ops, b.ops)
    assert not a.ops.equals(c.ops) or kind == "iperf"  # iperf draws nothing at random
    validate_trace(a)
    assert 10 < len(a.ops) <= 5000  # a few thousand ops per simulated second at most
    assert a.ops["time"].max() <= 1.05
    assert set(a.ops["flow"]) <= set(a.flows["flow"])
    assert len(GENERATORS[kind][0].__doc__) > 200  # documents where its shape comes from


def test_kata_agent_is_small_h2g_request_response():
    tr = generate("kata-agent", seed=1, duration=1.0)
    sends = tr.ops[tr.ops["op"] == "send"]
    assert (sends["direction"] == "h2g").all() and (sends["reply_bytes"] > 0).all()
    assert sends["bytes"].between(100, 4096).all() and sends["reply_bytes"].between(64, 4096).all()
    assert tr.flows["guest_port"].iloc[0] == 1024 and tr.flows["direction"].iloc[0] == "h2g"
    # bursty: inter-request gaps are far more variable than a Poisson stream's (CV > 1)
    gaps = np.diff(sends["time"].to_numpy())
    assert gaps.std() / gaps.mean() > 1.5
    # closed loop within a burst: the next call starts after the previous reply
    assert (sends["time"].to_numpy()[1:] >= (sends["time"] + sends["think_time"]).to_numpy()[:-1]).all()


def test_tsi_is_heavy_tailed_both_ways():
    tr = generate("tsi", seed=2, duration=3.0, connections=4, inbound=1)
    s = summarize(tr)
    assert s["bytes_g2h"] > 0 and s["bytes_h2g"] > 0
    assert set(tr.flows["direction"]) == {"g2h", "h2g"}
    sizes = np.concatenate([tr.ops["bytes"], tr.ops["reply_bytes"]])
    sizes = sizes[sizes >= 8192]
    assert sizes.max() > 20 * np.median(sizes)  # Pareto tail
    assert sizes.max() <= 4 << 20


def test_mesh_pays_one_connection_per_request():
    tr = generate("mesh", seed=3, duration=0.5)
    k = tr.ops["op"].value_counts()
    assert k["connect"] == k["send"] == k["close"] > 100
    for _, g in tr.ops.groupby("flow"):  # each lane's connections are sequential
        assert list(g["op"][:6]) == ["connect", "send", "close"] * 2


def test_logs_and_iperf():
    logs = generate("logs", seed=1, duration=1.0, rate=500)
    sends = logs.ops[logs.ops["op"] == "send"]
    assert 400 < len(sends) < 600 and (sends["direction"] == "g2h").all()
    assert (sends["reply_bytes"] == 0).all() and sends["bytes"].median() < 400
    ip = generate("iperf", seed=1, duration=0.01, rate_gbps=8, msg_bytes=65536)
    sends = ip.ops[ip.ops["op"] == "send"]
    assert set(sends["bytes"]) == {65536}
    assert np.allclose(np.diff(sends["time"]), 65536 * 8 / 8e9)


def test_noisy_neighbour_has_victim_and_aggressors():
    tr = generate("noisy-neighbour", seed=1, duration=0.5, aggressors=3)
    assert list(tr.flows["flow"]) == ["victim", "aggressor-0", "aggressor-1", "aggressor-2"]
    s = summarize(tr)["flows"]
    assert s["victim"]["requests"] > 50 and s["victim"]["connections"] == 1
    victim = s["victim"]["bytes_g2h"] + s["victim"]["bytes_h2g"]
    aggr = sum(s[f"aggressor-{i}"]["bytes_g2h"] + s[f"aggressor-{i}"]["bytes_h2g"]
               for i in range(3))
    assert aggr > 2 * victim
    ops = tr.ops
    big = np.maximum(ops["bytes"], ops["reply_bytes"])
    assert big[ops["flow"] == "victim"].max() <= 4096
    assert big[ops["flow"].str.startswith("aggressor") & (ops["op"] == "send")].median() >= 8192


def test_bad_generator_arguments():
    with pytest.raises(InputError, match="unknown trace generator 'kata'"):
        generate("kata", seed=1, duration=1)
    with pytest.raises(InputError, match="unknown param 'rat'"):
        generate("logs", seed=1, duration=1, rat=5)
    with pytest.raises(InputError, match="param rate: got 'fast'"):
        generate("logs", seed=1, duration=1, rate="fast")
    with pytest.raises(InputError, match="duration"):
        generate("logs", seed=1, duration=0)
    with pytest.raises(InputError, match="lanes"):
        generate("mesh", seed=1, duration=1, lanes=0)
    assert generator_params("iperf")["msg_bytes"] == 131072
