"""Capacity planning: the bracketing search, the CI rule, a real small plan, the CLI and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsockbench.cli import main
from vsockbench.plan import _search, plan_capacity

ROOT = Path(__file__).resolve().parents[1]
NN = ROOT / "workloads" / "noisy-neighbour-single.toml"


def drive(threshold, start, lowest, max_load, integer=True, rel_tol=0.05):
    """Run the search against an oracle: a load is good iff load <= threshold."""
    gen = _search(start, lowest, max_load, integer, rel_tol)
    asked = []
    load = next(gen)
    try:
        while True:
            asked.append(load)
            load = gen.send(load <= threshold)
    except StopIteration as stop:
        return stop.value, asked


@given(threshold=st.integers(0, 600), start=st.integers(1, 64))
def test_integer_search_finds_the_exact_threshold(threshold, start):
    (good, bad), asked = drive(threshold, start, 1, 512)
    if threshold < 1:
        assert good is None and bad == 1
    elif threshold >= 512:
        assert good == 512 and bad is None  # censored at the search limit
    else:
        assert good == threshold and bad == threshold + 1
    assert len(asked) == len(set(asked)) and len(asked) <= 2 * 10 + 2  # log-many, never repeated
    assert all(1 <= x <= 512 for x in asked)


@given(threshold=st.floats(1.0, 900.0), start=st.floats(1.0, 100.0))
def test_real_search_brackets_within_tolerance(threshold, start):
    (good, bad), _ = drive(threshold, start, start / 1024, 1000.0, integer=False, rel_tol=0.05)
    assert good <= threshold < bad and (bad - good) <= 0.05 * good


def test_plan_on_a_real_workload(tmp_path):
    res = plan_capacity(NN, knob="flow.tsi.connections", slo_us=100, designs=("single", "multi-device"),
                        replications=2, duration=0.003, warmup=0.0005, start=1, max_load=8, executor="serial",
                        progress=False)
    cap = res.capacity.set_index("design")
    loads = res.loads
    for d, r in cap.iterrows():
        mine = loads[loads["design"] == d].set_index("load")
        if not pd.isna(r["capacity"]):
            assert mine.loc[r["capacity"], "q_ci_high"] < 100  # the capacity meets the SLO on its CI bound
            assert (mine.loc[mine.index <= r["capacity"], "meets_slo"]).all()
        if not r["censored"]:
            assert not mine.loc[r["first_breach"], "meets_slo"]
            assert r["first_breach"] == np.nan_to_num(r["capacity"]) + 1  # integer knob: adjacent bracket
    # moving TSI to its own device buys the agent headroom
    assert np.nan_to_num(cap.loc["multi-device", "capacity"]) > np.nan_to_num(cap.loc["single", "capacity"])
    assert len(res.evaluations) == 2 * len(loads)
    assert res.victims == ("agent",)
    from vsockbench.plan import plot_plan

    paths = plot_plan(res, tmp_path)
    assert [p.name for p in paths] == ["plan.png", "plan.svg"] and all(p.stat().st_size > 1000 for p in paths)
    assert "single" in res.table() and "multi-device" in res.table()


def test_plan_takes_the_designs_profiles(tmp_path):
    """--victim-profile: the victim's device runs on that profile (as compare's), in every design."""
    prof = tmp_path / "slow.toml"
    prof.write_text('[profile]\nname = "slow"\nbackend = "vhost"\nbase = "vhost"\nbackend_per_pkt_ns = 20000.0\n')
    kw = dict(knob="flow.tsi.connections", slo_us=100, designs=("multi-device",), replications=2, duration=0.003,
              warmup=0.0005, start=1, max_load=2, executor="serial", progress=False)
    base = plan_capacity(NN, **kw)
    slow = plan_capacity(NN, victim_profile=str(prof), aggressor_profile="vmm", **kw)
    at = {name: r.loads.set_index(["design", "load"]).loc[("multi-device", 1), "q_mean"]
          for name, r in (("base", base), ("slow", slow))}
    assert at["slow"] > 1.5 * at["base"], at  # a 10x dearer worker on the agent's device
    assert slow.capacity["label"].tolist() == ["2 devices (vhost + vmm)"]


def test_plan_sensitivity_plans_the_unvalidated_profiles_variants(tmp_path):
    """With sensitivity, multi-device (its TSI device on the vhost-user profile, whose daemon
    costs no measured run checked) is planned again with those costs halved and doubled, as rows
    of its own; the single device (vhost, cross-validated) is not.  The scaled costs really run:
    at the same load TSI moves more data on the cheaper daemon."""
    res = plan_capacity(NN, knob="flow.tsi.connections", slo_us=100, designs=("single", "multi-device"),
                        replications=2, duration=0.003, warmup=0.0005, start=1, max_load=2, executor="serial",
                        progress=False, sensitivity=True)
    names = res.capacity["design"].tolist()
    assert names == ["single", "multi-device", "multi-device [vhost-user x0.5]", "multi-device [vhost-user x2]"]
    assert res.capacity.set_index("design").loc["multi-device [vhost-user x2]", "label"].endswith(
        "vhost-user backend costs x2")
    at1 = res.loads[res.loads["load"] == 1].set_index("design")["aggressor_gbps"]
    assert at1["multi-device [vhost-user x0.5]"] > at1["multi-device"] > at1["multi-device [vhost-user x2]"]


def test_a_straddling_interval_counts_as_a_breach():
    from vsockbench.plan import _ci

    m, lo, hi = _ci(np.array([80.0, 99.0, 95.0]))
    assert m < 100 < hi  # mean under the SLO, upper bound over it: not OK
    assert _ci(np.array([50.0, np.inf]))[2] == np.inf  # a starved victim never meets an SLO


def test_plan_cli_writes_tables_and_plots(tmp_path, capsys):
    out = tmp_path / "plan"
    rc = main(["plan", str(NN), "--slo-us", "120", "--design", "multi-queue-worker", "--replications", "2",
               "--duration", "0.003", "--max-load", "4", "--start", "1", "--workers", "1", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "multi-queue-worker" in text and "agent p99" in text
    cap = pd.read_parquet(out / "capacity.parquet")
    assert list(cap["design"]) == ["multi-queue-worker"]
    assert (out / "plan.png").exists() and (out / "plan.svg").exists()


@pytest.mark.parametrize("args,words", [
    (["--knob", "flow.nope.connections"], "no flow named 'nope'"),
    (["--knob", "flow.agent.rate", "--start", "-1"], "expected 0 <"),
    (["--replications", "1"], "expected >= 2"),
    (["--slo-us", "0"], "expected > 0"),
    (["--max-load", "5000"], "connections = 5000"),
    (["--duration", "0"], "expected > 0 seconds"),
    (["--victim-profile", "no-such.toml"], "victim profile 'no-such.toml': no such profile file"),
    (["--scheduler", "notaurl"], "expected tcp://HOST:PORT"),
    # a rate the model cannot run (arrivals that no longer advance time): the scenario's own limit
    (["--knob", "flow.agent.rate", "--start", "1e6", "--max-load", "1e30"], "expected flow.agent.rate <= 1e+07"),
    (["--duration", "1e300"], "--duration 1e+300; expected 0 < duration <= 3600"),
    (["--replications", "100000000"], "--replications 100000000; expected 1..10000"),
    (["--knob", "flow.tsi.direction"], "direction is not a numeric field (the workload's value: 'g2h')"),
    (["--knob", "flow.tsi.zerocopy"], "zerocopy is not a numeric field"),
    (["--scheduler", "foo://1.2.3.4:8786"], "unknown scheme 'foo'"),
])
def test_plan_bad_input_exits_2(capsys, args, words):
    argv = ["plan", str(NN), "--slo-us", "100", "--no-progress", "--executor", "serial", *args]
    if "--slo-us" in args:
        argv[3] = args[args.index("--slo-us") + 1]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err


def test_plan_missing_workload(capsys):
    assert main(["plan", "nope.toml", "--slo-us", "100"]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_the_default_search_limit_stays_inside_the_rate_limit():
    """--start 1e6 on a rate: the default limit (64 x start) would be above the scenario's 1e7."""
    from vsockbench.plan import _knob_limit

    assert _knob_limit("flow.agent.rate") == 1e7 and _knob_limit("flow.agent.think_time") is None
    res = plan_capacity(NN, knob="flow.agent.rate", slo_us=1e9, designs=("single",), replications=2, start=5e6,
                        duration=0.0005, warmup=0.0001, executor="serial", progress=False)
    assert res.capacity["capacity"].iloc[0] == 1e7 and res.capacity["censored"].iloc[0]
