"""`vsockbench simulate`: the DESIGN 6a JSON contract, Parquet records, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from vsockbench.cli import main
from vsockbench.model.apps import zerocopy_allowed


def test_json_contract_and_parquet_records(tmp_path, capsys):
    out, js = tmp_path / "run", tmp_path / "s.json"
    assert main(["simulate", "workloads/pingpong-vhost.toml", "--json", str(js), "--out", str(out),
                 "--duration", "0.003"]) == 0
    s = json.loads(js.read_text())
    assert set(s) >= {"flows", "devices", "threads", "sim"}
    f = s["flows"]["pingpong"]
    assert set(f) >= {"throughput_gbps", "messages", "bytes_sent", "bytes_received", "latency_us"}
    assert set(f["latency_us"]) == {"p50", "p90", "p99", "p999", "mean"}
    assert f["messages"] > 50 and 5 < f["latency_us"]["p50"] < f["latency_us"]["p999"]
    assert s["devices"]["3"]["queues"]["0"]["packets"] == s["devices"]["3"]["packets"] > 0
    assert "vhost-3" in s["threads"] and 0 < s["threads"]["vhost-3"]["cpu_util"] < 1
    assert set(s["sim"]) >= {"events", "packets", "wall_s", "seed"} and s["sim"]["seed"] == 1
    msgs = pd.read_parquet(out / "messages.parquet")
    assert (msgs["kind"] == "rtt").sum() >= f["messages"]
    meta = pq.read_schema(out / "packets.parquet").metadata
    assert meta[b"vsockbench.seed"] == b"1"
    text = capsys.readouterr().out
    assert "pingpong" in text
    # the built-in vhost profile's cross-validation figures follow the results
    assert "held-out |relative error|" in text and "vhost (fitted on vhost/" in text and "held out rtt" in text


def test_zerocopy_eligibility_depends_on_the_ring():
    """virtio_transport_can_msgzerocopy: pages + 1 must fit the TX ring."""
    assert zerocopy_allowed(65536, 65536, 128)  # 16 pages + 1 <= 128
    assert not zerocopy_allowed(65536, 65536, 16)  # a 16-entry ring cannot hold it
    assert zerocopy_allowed(4096, 65536, 2)


def test_unwritable_output_is_a_clean_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["simulate", "workloads/pingpong-vhost.toml", "--duration", "0.001",
                 "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert "vsockbench: error:" in err and "Traceback" not in err


def test_the_progress_bar_leaves_the_run_unchanged(capsys):
    """``simulate(progress=True)`` (the CLI's choice on a terminal) steps the event loop itself to
    advance its bar: the same events in the same order, so the same records and event count."""
    from pathlib import Path

    from vsockbench.scenario import load_scenario
    from vsockbench.simulate import PROGRESS_EVENTS, simulate

    sc = load_scenario(Path(__file__).resolve().parents[1] / "workloads" / "noisy-neighbour-multi-queue.toml")
    plain, barred = simulate(sc), simulate(sc, progress=True)
    assert plain.summary["sim"]["events"] > 3 * PROGRESS_EVENTS  # the bar did stop the loop
    for run in (plain, barred):
        run.summary["sim"].pop("wall_s")
    assert barred.summary == plain.summary
    assert barred.messages.equals(plain.messages) and barred.threads.equals(plain.threads)
    assert "sim s" in capsys.readouterr().err  # tqdm drew it


def test_an_override_beyond_the_limits_exits_2(capsys):
    """--duration skips the file's [run] checks: an endless run is refused there too."""
    assert main(["simulate", "workloads/pingpong-vhost.toml", "--duration", "1e300"]) == 2
    err = capsys.readouterr().err
    assert "--duration 1e+300; expected 0 < duration <= 3600 simulated seconds" in err and "Traceback" not in err


def test_json_output_onto_an_input_is_refused(tmp_path, capsys):
    sc = tmp_path / "x.toml"
    text = Path("workloads/pingpong-vhost.toml").read_text()
    sc.write_text(text)
    for target in (sc, tmp_path / "." / "x.toml"):
        assert main(["simulate", str(sc), "--duration", "0.001", "--json", str(target)]) == 2
        err = capsys.readouterr().err
        assert f"--json {target}: is an input of this run" in err
    assert sc.read_text() == text  # the scenario is intact
    assert main(["simulate", str(sc), "--duration", "0.001", "--json", str(tmp_path / "s.json")]) == 0
