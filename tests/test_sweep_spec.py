"""Sweep files: dotted factor paths, factorial and listed points, tasks, and bad files (exit 2)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from vsockbench.cli import main
from vsockbench.errors import InputError
from vsockbench.sweep import Task, load_sweep, run_task, set_path, sweep_tasks

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "workloads" / "noisy-neighbour-single.toml"


def write(tmp_path, body: str, name="s.toml") -> Path:
    p = tmp_path / name
    p.write_text(f'base = "{BASE}"\n' + body)
    return p


def test_factorial_points_replications_and_seeds(tmp_path):
    spec = load_sweep(write(tmp_path, 'replications = 2\n[factors]\ndesign = ["single", "multi-device"]\n'
                                      '"flow.tsi.connections" = [1, 2, 4]\n'))
    tasks = sweep_tasks(spec)
    assert len(spec.points) == 6 and len(tasks) == 12
    assert {t.seed for t in tasks} == {1, 2}  # common random numbers: the same seeds at every point
    assert len({t.task_id for t in tasks}) == 12
    t = tasks[-1]
    assert dict(t.factors) == {"design": "multi-device", "flow.tsi.connections": 4}
    assert t.scenario["flow"][1]["connections"] == 4 and t.design == "multi-device"
    assert pickle.loads(pickle.dumps(t)) == t  # tasks travel to workers


def test_task_ids_follow_the_inputs(tmp_path):
    a = sweep_tasks(load_sweep(write(tmp_path, 'replications = 1\n[factors]\n"guest.vcpus" = [1, 2]\n')))
    b = sweep_tasks(load_sweep(write(tmp_path, 'replications = 1\n[factors]\n"guest.vcpus" = [1, 3]\n')))
    assert a[0].task_id == b[0].task_id  # same point, same inputs -> reusable
    assert a[1].task_id != b[1].task_id  # edited point -> never a stale result


def test_paths_reach_every_kind_of_field():
    import tomllib

    data = tomllib.loads(BASE.read_text())
    assert set_path(data, "flow.tsi.connections", 8)["flow"][1]["connections"] == 8
    assert set_path(data, "flow.1.msg_bytes", 4096)["flow"][1]["msg_bytes"] == 4096
    assert set_path(data, "device.0.backend", "vmm")["device"][0]["backend"] == "vmm"
    assert set_path(data, "host.cores", 2)["host"]["cores"] == 2
    devs = [{"cid": 3}, {"cid": 4, "order": 1}]
    assert set_path(data, "device", devs)["device"] == devs
    assert data["flow"][1]["connections"] == 2  # the base is never modified
    for bad in ("flow.nope.rate", "device.7.backend", "gpu.count", "guest", "flow.tsi.a.b"):
        with pytest.raises(KeyError):
            set_path(data, bad, 1)


def test_points_mode_with_whole_device_lists():
    spec = load_sweep(ROOT / "workloads" / "sweeps" / "backends.toml")
    assert spec.mode == "points" and len(spec.points) == 4
    rows = [run_task(t) for t in sweep_tasks(spec) if t.replication == 0][:2]
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    # a factor the point leaves unset shows the base's value
    assert rows[0]["flow.tsi.bind_cid"] is None and rows[1]["flow.tsi.bind_cid"] == 4


def test_shipped_sweeps_load():
    for p in (ROOT / "workloads" / "sweeps").glob("*.toml"):
        assert sweep_tasks(load_sweep(p)), p


def test_inline_base_and_trace_paths_relative_to_the_base(tmp_path):
    spec = load_sweep(write(tmp_path, '[factors]\n"flow.tsi.connections" = [1]\n'))
    assert Path(spec.base_dir) == BASE.parent
    inline = tmp_path / "inline.toml"
    inline.write_text('[base]\n[[base.device]]\ncid = 3\n[[base.flow]]\nname = "a"\nrole = "victim"\n'
                      'kind = "pingpong"\ndirection = "h2g2h"\nmsg_bytes = 64\n'
                      '[factors]\n"run.duration" = [0.002]\n')
    row = run_task(sweep_tasks(load_sweep(inline))[0])
    assert row["status"] == "ok" and row["victim_p99_us"] > 0


BAD = [
    ('[factors]\n"flow.x.rate" = [1]\n', 'factors."flow.x.rate"', "no flow named 'x'"),
    ('[factors]\n"flow.tsi.connections" = [1, 0]\n', 'factors."flow.tsi.connections"', "connections = 0"),
    ('[factors]\n"guest.vcpu" = [1]\n', 'factors."guest.vcpu"', "unknown field 'vcpu'"),
    ('[factors]\ndesign = ["single", "quad"]\n', "factors.design", "'quad'"),
    ('[factors]\n"device.3.backend" = ["vhost"]\n', 'factors."device.3.backend"', "index 3 out of range"),
    ('[factors]\n"device.0.backend" = ["qemu"]\n', 'factors."device.0.backend"', "backend = 'qemu'"),
    ('[factors]\n"guest.vcpus" = 2\n', 'factors."guest.vcpus"', "non-empty list"),
    ('[factors]\n"flow.tsi.rate" = [100.0]\n', 'factors."flow.tsi.rate"', "pingpong/rpc"),
    ('[factors]\ndesign = ["single"]\n"device.0.queues" = [2]\n', "factors.design", "device list"),
    ('[factors]\n"flow.tsi.bind_cid" = [4]\n', 'factors."flow.tsi.bind_cid"', "bind_cid = 4"),
    ('mode = "points"\n[[point]]\n"device" = [{cid = 3}, {cid = 3, order = 1}]\n', "point.device", "cid = 3"),
    ('mode = "points"\n', "point", "at least one"),
    ('[[point]]\n"guest.vcpus" = 1\n', "point", 'mode = "points"'),
    ("replications = 0\n", "replications", ">= 1"),
    ("replications = 100000000\n", "replications", "expected 1..10000"),  # --dry-run hung making the tasks
    ('[factors]\nvictim_profile = ["vmm"]\n', "factors.victim_profile", "vary design too"),
    ('[factors]\ndesign = ["single"]\nvictim_profile = ["nope.toml"]\n', "factors.victim_profile",
     "no such profile file"),
    ('[factors]\ndesign = ["multi-device"]\naggressor_profile = [3]\n', "factors.aggressor_profile",
     "expected a profile name"),
    ('mode = "grid"\n', "mode", "factorial or points"),
    ("bogus = 1\n", "bogus", "unknown key"),
]


@pytest.mark.parametrize("body,field,words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_sweep_files_exit_2_naming_the_file_and_field(tmp_path, capsys, body, field, words):
    p = write(tmp_path, body, "bad.toml")
    with pytest.raises(InputError):
        load_sweep(p)
    assert main(["sweep", str(p), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(p) in err and field in err and words in err, err


def test_bad_base(tmp_path, capsys):
    p = tmp_path / "b.toml"
    for body, words in (('base = "missing.toml"\n', "cannot read"), ("replications = 1\n", "missing base"),
                        ("[base]\n", "base: device")):
        p.write_text(body)
        assert main(["sweep", str(p), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert str(p) in err and words in err, err


def test_task_from_a_bad_dict_is_recorded_not_raised():
    t = Task("t", 0, 0, 1, {"device": [], "flow": []})
    row = run_task(t)
    assert row["status"] == "error" and "InputError" in row["error"] and "no devices" in row["error"]


def test_design_profiles_are_factors_resolved_beside_the_base(tmp_path):
    """victim_profile / aggressor_profile vary the profiles of a design's devices (designs.apply_design):
    a file relative to the base scenario, as a device's profile field is; a workers' task carries
    its absolute path, and its task id follows the file's content."""
    base_dir = tmp_path / "w"
    base_dir.mkdir()
    (base_dir / "base.toml").write_text(BASE.read_text())
    prof = base_dir / "slow.toml"
    prof.write_text('[profile]\nname = "slow"\nbackend = "vhost"\nbase = "vhost"\nbackend_per_pkt_ns = 20000.0\n')
    p = tmp_path / "s.toml"
    p.write_text('base = "w/base.toml"\nreplications = 1\n[factors]\ndesign = ["single", "multi-device"]\n'
                 'victim_profile = ["vhost", "slow.toml"]\naggressor_profile = ["vmm"]\n')
    tasks = sweep_tasks(load_sweep(p))
    assert len(tasks) == 4
    slow = [t for t in tasks if dict(t.factors)["victim_profile"] == "slow.toml"]
    assert all(dict(t.profiles) == {"victim_profile": str(prof.resolve()), "aggressor_profile": "vmm"} for t in slow)
    rows = {(dict(t.factors)["design"], dict(t.factors)["victim_profile"]): run_task(t) for t in tasks}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    # the slow victim device is really simulated: the victim waits longer on it, in both designs
    for design in ("single", "multi-device"):
        assert rows[(design, "slow.toml")]["victim_p50_us"] > 1.5 * rows[(design, "vhost")]["victim_p50_us"]
    before = {t.task_id for t in slow}
    prof.write_text(prof.read_text().replace("20000.0", "30000.0"))
    assert before.isdisjoint(t.task_id for t in sweep_tasks(load_sweep(p)))  # an edited profile: new tasks
