"""Bad scenario files: exit status 2, one line naming the file and the field, no traceback."""

from __future__ import annotations

import pytest

from vsockbench.cli import main

GOOD_DEVICE = '[[device]]\ncid = 3\nbackend = "vhost"\n'
GOOD_FLOW = '[[flow]]\nname = "f"\nkind = "stream"\ndirection = "g2h"\nmsg_bytes = 4096\n'
RUN = '[run]\nduration = 0.001\nwarmup = 0.0\n'
PINGPONG = '[[flow]]\nname = "p"\nkind = "pingpong"\ndirection = "h2g2h"\nmsg_bytes = 64\n'


def devices(n, **extra):
    return "".join(f'[[device]]\ncid = {3 + i}\nbackend = "vhost"\norder = {i}\n' for i in range(n))


CASES = [
    # (id, file text, text the message must contain)
    ("not-toml", "[run\nduration = 1", "not valid TOML"),
    ("unknown-table", RUN + "[gust]\nvcpus = 1\n" + GOOD_DEVICE + GOOD_FLOW, "gust"),
    ("negative-duration", "[run]\nduration = -1\n" + GOOD_DEVICE + GOOD_FLOW, "run.duration"),
    ("duration-string", '[run]\nduration = "long"\n' + GOOD_DEVICE + GOOD_FLOW, "duration"),
    ("zero-vcpus", RUN + "[guest]\nvcpus = 0\n" + GOOD_DEVICE + GOOD_FLOW, "guest.vcpus"),
    ("bad-affinity", RUN + "[guest]\naffinity = \"sticky\"\n" + GOOD_DEVICE + GOOD_FLOW, "guest.affinity"),
    ("first-vcpu-out-of-range", RUN + '[guest]\nvcpus = 2\naffinity = "pinned"\n' + GOOD_DEVICE + GOOD_FLOW
     + "first_vcpu = 2\n", "flow 'f'.first_vcpu"),
    ("first-vcpu-free-guest", RUN + "[guest]\nvcpus = 2\n" + GOOD_DEVICE + GOOD_FLOW + "first_vcpu = 1\n",
     "flow 'f'.first_vcpu"),
    ("irq-vcpu-out-of-range", RUN + '[guest]\nvcpus = 2\naffinity = "pinned"\n' + GOOD_DEVICE + "irq_vcpu = 2\n"
     + GOOD_FLOW, "device[0].irq_vcpu"),
    ("irq-vcpu-free-guest", RUN + "[guest]\nvcpus = 2\n" + GOOD_DEVICE + "irq_vcpu = 1\n" + GOOD_FLOW,
     "device[0].irq_vcpu"),
    ("irq-vcpu-string", RUN + '[guest]\nvcpus = 2\naffinity = "pinned"\n' + GOOD_DEVICE + 'irq_vcpu = "1"\n'
     + GOOD_FLOW, "irq_vcpu"),
    ("no-devices", RUN + GOOD_FLOW, "no devices"),
    ("17-devices", RUN + devices(17) + GOOD_FLOW, "at most 16"),
    ("duplicate-cid", RUN + GOOD_DEVICE + '[[device]]\ncid = 3\nbackend = "vmm"\norder = 1\n' + GOOD_FLOW,
     "device[1].cid"),
    ("duplicate-order", RUN + devices(1) + '[[device]]\ncid = 9\nbackend = "vmm"\norder = 0\n' + GOOD_FLOW,
     "device[1].order"),
    ("reserved-cid", RUN + '[[device]]\ncid = 2\n' + GOOD_FLOW, "device[0].cid"),
    ("unknown-backend", RUN + '[[device]]\ncid = 3\nbackend = "virtio-mmio"\n' + GOOD_FLOW, "device[0].backend"),
    ("zero-queues", RUN + '[[device]]\ncid = 3\nqueues = 0\n' + GOOD_FLOW, "device[0].queues"),
    ("steering-single-queue", RUN + '[[device]]\ncid = 3\nsteering = "vcpu"\n' + GOOD_FLOW, "device[0].steering"),
    ("unknown-steering", RUN + '[[device]]\ncid = 3\nqueues = 2\nsteering = "rss"\n' + GOOD_FLOW,
     "device[0].steering"),
    ("unknown-profile", RUN + '[[device]]\ncid = 3\nprofile = "nope"\n' + GOOD_FLOW, "device[0].profile"),
    ("unknown-device-field", RUN + '[[device]]\ncid = 3\nrings = 2\n' + GOOD_FLOW, "rings"),
    ("no-flows", RUN + GOOD_DEVICE, "no flows"),
    ("unknown-kind", RUN + GOOD_DEVICE + '[[flow]]\nname = "f"\nkind = "udp"\n', "kind"),
    ("bad-direction", RUN + GOOD_DEVICE + '[[flow]]\nname = "f"\nkind = "pingpong"\ndirection = "g2h"\n',
     "direction"),
    ("zero-msg", RUN + GOOD_DEVICE + '[[flow]]\nname = "f"\nmsg_bytes = 0\n', "msg_bytes"),
    ("buffer-above-max", RUN + GOOD_DEVICE + '[[flow]]\nname = "f"\nbuffer_bytes = 1048576\n', "buffer_bytes"),
    ("bind-unknown-cid", RUN + GOOD_DEVICE + '[[flow]]\nname = "f"\nbind_cid = 7\n', "bind_cid"),
    ("seqpacket-on-vhost-user", RUN + '[[device]]\ncid = 3\nbackend = "vhost-user"\n'
     + '[[flow]]\nname = "f"\nsocket = "seqpacket"\n', "socket"),
    ("queue-without-class", RUN + '[[device]]\ncid = 3\nqueues = 2\n' + '[[flow]]\nname = "f"\nqueue = 1\n',
     "queue"),
    ("queue-out-of-range", RUN + '[[device]]\ncid = 3\nqueues = 2\nsteering = "class"\n'
     + '[[flow]]\nname = "f"\nqueue = 2\n', "queue"),
    ("duplicate-flow-name", RUN + GOOD_DEVICE + GOOD_FLOW + GOOD_FLOW, "flow[1].name"),
    ("rate-on-stream", RUN + GOOD_DEVICE + '[[flow]]\nname = "f"\nrate = 100.0\n', "rate"),
    ("trace-missing-file", RUN + GOOD_DEVICE + '[[flow]]\nname = "f"\nkind = "trace"\ntrace = "nope.csv"\n',
     "trace"),
    ("unknown-app", RUN + GOOD_DEVICE + GOOD_FLOW + 'app = "netperf"\n', "flow 'f'.app"),
    ("bool-as-int", RUN + GOOD_DEVICE + '[[flow]]\nname = "f"\nconnections = true\n', "connections"),
    # upper bounds: beyond them a run hangs (arrivals that no longer advance time) or never ends
    ("rate-1e30", RUN + GOOD_DEVICE + PINGPONG + "rate = 1e30\n", "flow 'p'.rate: rate = 1e+30; expected 0..1e+07"),
    ("rate-1e10", RUN + GOOD_DEVICE + PINGPONG + "rate = 1e10\n", "flow 'p'.rate"),
    ("duration-1e300", "[run]\nduration = 1e300\n" + GOOD_DEVICE + GOOD_FLOW, "run.duration: duration = 1e+300; "
     "expected 0 < duration <= 3600 simulated seconds"),
    ("warmup-1e300", "[run]\nwarmup = 1e300\n" + GOOD_DEVICE + GOOD_FLOW, "run.warmup"),
    ("replications-1e8", "[run]\nreplications = 100000000\n" + GOOD_DEVICE + GOOD_FLOW, "run.replications: "
     "replications = 100000000; expected 1..10000"),
    # fields that were accepted and made nonsense
    ("negative-read-limit", RUN + GOOD_DEVICE + GOOD_FLOW + "read_limit_bytes = -1\n", "flow 'f'.read_limit_bytes"),
    ("negative-port", RUN + GOOD_DEVICE + GOOD_FLOW + "port = -1\n", "flow 'f'.port: port = -1; expected 0..4294967294"),
    ("huge-port", RUN + GOOD_DEVICE + GOOD_FLOW + "port = 99999999999\n", "flow 'f'.port"),
    ("trace-flow-on-stream", RUN + GOOD_DEVICE + GOOD_FLOW + 'trace_flow = "logs"\n', "trace_flow apply to kind"),
]


@pytest.mark.parametrize("case_id,text,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_scenario_exits_2_naming_the_field(tmp_path, capsys, case_id, text, needle):
    path = tmp_path / f"{case_id}.toml"
    path.write_text(text)
    assert main(["simulate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and needle in err, err
    assert "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "absent.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_at_least_15_cases():
    assert len(CASES) >= 15


BINARY = b"\xff\xfe\x00\x01not text\x80"


@pytest.mark.parametrize("argv,expected", [
    (["simulate", "{f}"], "a scenario TOML file"),
    (["compare", "--workload", "{f}", "--out", "{d}"], "a scenario TOML file"),
    (["sweep", "{f}", "--out", "{d}"], "a sweep TOML file"),
    (["plan", "{f}", "--knob", "flow.f.connections", "--slo-us", "100", "--out", "{d}"], "a workload TOML file"),
    (["profiles", "--show", "{f}"], "a profile TOML file"),
    (["calibrate", "{f}", "--out-dir", "{d}"], "a CSV file"),
    (["validate", "{f}", "--profiles", "{d}"], "a CSV file"),
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_a_binary_input_file_exits_2_naming_it(tmp_path, capsys, argv, expected):
    """A file that is not UTF-8 text (a binary, a mis-encoded export) is bad input, not a crash:
    each command that reads a user's TOML or CSV names the file and what it expected."""
    f = tmp_path / "input.toml"
    f.write_bytes(BINARY)
    assert main([a.format(f=f, d=tmp_path / "out") for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert str(f) in err and "not UTF-8 text" in err and expected in err, err
    assert "Traceback" not in err


def test_an_unknown_trace_flow_names_the_flows_the_trace_has(tmp_path, capsys):
    """trace_flow picks one flow of the trace; a name it does not have replayed nothing (0
    messages, no error)."""
    from pathlib import Path

    logs = Path(__file__).resolve().parents[1] / "workloads" / "traces" / "logs.csv"
    path = tmp_path / "t.toml"
    path.write_text(RUN + GOOD_DEVICE + f'[[flow]]\nname = "t"\nkind = "trace"\ntrace = "{logs}"\n'
                    'trace_flow = "nosuch"\n')
    assert main(["simulate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "flow 't'.trace_flow" in err and "'nosuch'" in err and "expected one of logs" in err
    path.write_text(path.read_text().replace("nosuch", "logs"))
    assert main(["simulate", str(path), "--json", str(tmp_path / "s.json")]) == 0


@pytest.mark.parametrize("line,words", [
    ("jitter_sigma = 1000.0", "jitter_sigma = 1000.0; expected at most 2"),  # numpy's exp overflowed: 0 messages
    ("guest_send_call_ns = 1e30", "guest_send_call_ns = 1e+30; expected at most 1000000000"),
    ("ring_size = 100000", "ring_size = 100000; expected at most 32768"),
    ("weight_bytes = 99999999999", "weight_bytes = 99999999999; expected at most 4294967295"),
])
def test_a_profile_number_out_of_its_plausible_range_exits_2(tmp_path, capsys, line, words):
    prof = tmp_path / "p.toml"
    prof.write_text(f'name = "p"\n{line}\n')
    path = tmp_path / "s.toml"
    path.write_text(RUN + GOOD_DEVICE + 'profile = "p.toml"\n' + GOOD_FLOW)
    assert main(["simulate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "device[0].profile" in err and str(prof) in err and words in err, err
    assert "Traceback" not in err and "Warning" not in err
