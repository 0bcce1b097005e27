"""Shared helpers: build small scenarios in code."""

from __future__ import annotations

import pytest

from vsockbench.scenario import scenario_from_dict


def make_scenario(devices=None, flows=None, *, duration=0.005, warmup=0.001, seed=1, vcpus=2, cores=4,
                  packets="all", affinity="free"):
    devices = devices or [{"cid": 3, "backend": "vhost"}]
    flows = flows or [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 65536}]
    return scenario_from_dict({"run": {"duration": duration, "warmup": warmup, "seed": seed, "packets": packets},
                               "guest": {"vcpus": vcpus, "affinity": affinity}, "host": {"cores": cores},
                               "device": devices, "flow": flows})


@pytest.fixture
def scenario_factory():
    return make_scenario
