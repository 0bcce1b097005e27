"""Every shipped generator is a scenario in workloads/, and each simulates."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsockbench.trace import GENERATORS, read_trace

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ROOT / "workloads"


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_scenario_and_trace_shipped(kind):
    scen = WORKLOADS / f"trace-{kind}.toml"
    text = scen.read_text()
    assert f'trace = "traces/{kind}.csv"' in text and 'kind = "trace"' in text
    tr = read_trace(WORKLOADS / "traces" / f"{kind}.csv")
    assert len(tr.ops) <= 5000
    for line in text.splitlines():
        if line.startswith("trace_flow"):
            assert line.split('"')[1] in set(tr.flows["flow"])


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_every_generator_scenario_simulates(kind, tmp_path):
    pytest.importorskip("vsockbench.simulate")
    from vsockbench.scenario import load_scenario
    from vsockbench.simulate import simulate

    sc = load_scenario(WORKLOADS / f"trace-{kind}.toml")
    res = simulate(sc)
    flows = res.summary["flows"]
    assert set(flows) == {f.name for f in sc.flows}
    assert sum(f["bytes_received"] for f in flows.values()) > 0
    assert len(res.packets) > 0 and res.checks.get("conserved", True)
    # the packets the model writes export to a pcap the importer reads back
    from vsockbench.trace import export_pcap, read_pcap, summarize

    back, stats = read_pcap(export_pcap(res.packets, tmp_path / f"{kind}.pcap"))
    rw = res.packets[res.packets["op"] == 5]
    assert summarize(back)["bytes_total"] == int(rw["len"].sum())
    assert stats.packets == len(res.packets)
