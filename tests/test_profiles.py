"""Profiles: every parameter documented, TOML round trip, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vsockbench.errors import InputError
from vsockbench.profiles import BUILTIN_PROFILES, SOURCES, Profile, load_profile, save_profile


def test_every_parameter_names_its_source():
    documented = set(SOURCES)
    params = {f.name for f in dataclasses.fields(Profile)} - {"name", "backend", "setup"}
    assert params <= documented, sorted(params - documented)
    for key in params:
        assert SOURCES[key].startswith(("code:", "est:", "fit:", "calibrated")), key


def test_one_builtin_profile_per_backend_with_kernel_constants():
    assert set(BUILTIN_PROFILES) >= {"vhost", "vhost-user", "vmm"}
    vhost, fc = BUILTIN_PROFILES["vhost"], BUILTIN_PROFILES["vmm"]
    assert (vhost.weight_pkts, vhost.weight_bytes) == (256, 0x80000)  # VHOST_VSOCK_PKT_WEIGHT / _WEIGHT
    assert vhost.ring_size == 128 and vhost.slots_per_pkt == 1  # QEMU queue size, INDIRECT_DESC
    assert fc.ring_size == 256 and fc.slots_per_pkt == 2  # Firecracker: no INDIRECT_DESC
    assert fc.host_credit_threshold_bytes == 4096 and fc.host_buf_alloc_bytes == 65536
    assert not BUILTIN_PROFILES["vhost-user"].seqpacket and vhost.seqpacket


@pytest.mark.parametrize("name", ["vhost", "vhost-user", "vmm"])
def test_toml_round_trip(tmp_path, name):
    prof = BUILTIN_PROFILES[name].replace(guest_kick_ns=1234.5, setup="x/y")
    path = save_profile(prof, tmp_path / f"{name}.toml")
    assert load_profile(path) == prof
    assert "# code:" in path.read_text()  # sources travel with the file


@pytest.mark.parametrize("text,needle", [
    ("[profile]\nbase = \"vhost\"\nguest_kick = 1\n", "guest_kick"),
    ("[profile]\nbase = \"vhost\"\nguest_kick_ns = -5\n", "guest_kick_ns"),
    ("[profile]\nbase = \"vhost\"\nring_size = 12.5\n", "ring_size"),
    ("[profile]\nbackend = \"hyperv\"\n", "hyperv"),
    ("[profile]\nbase = \"vhost\"\nseqpacket = 1\n", "seqpacket"),
    ("[profile\n", "TOML"),
])
def test_bad_profile_is_a_clear_error(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(InputError) as exc:
        load_profile(p)
    assert needle in str(exc.value) and str(p) in str(exc.value)


def test_every_shipped_profile_states_its_setups_code_constants_and_todays_sources():
    """A shipped profile not refitted since a code constant was added would load that field's
    default (today's code) instead of its setup's kernels' value, and a corrected source would
    stay wrong in its comments: bench/restate_profiles.py rewrites them, values unchanged.  Each
    file must be what it writes."""
    import sys

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "bench"))
    from restate_profiles import restated, variants_of_shipped_rows

    variants = variants_of_shipped_rows()
    stale = [p.name for p in sorted((root / "vsockbench" / "data" / "profiles").glob("*.toml"))
             if restated(p, variants) != p.read_text()]
    assert not stale, f"run python bench/restate_profiles.py: {stale}"
