"""Measured effects of a code change (results/measured/effects): read, checked, predicted by one constant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vsockbench.effects import EFFECT_COLUMNS, predict_effect, read_effects
from vsockbench.errors import InputError
from vsockbench.predict import Predictor, simulate_key
from vsockbench.profiles import builtin_profile, shipped_profiles

EFFECTS = Path(__file__).resolve().parents[1] / "results" / "measured" / "effects"
HEADER = ",".join(EFFECT_COLUMNS)


def test_shipped_effects_name_shipped_profiles_that_lack_the_change():
    rows = [e for f in sorted(EFFECTS.glob("*.csv")) for e in read_effects(f)]
    assert len(rows) == 29  # PR #5872: 10 MMIO instances x (g2h, h2g, latency), one latency cell unreadable
    with_setup = [e for e in rows if e.setup]
    assert {e.instance for e in with_setup} == {"m5n.metal", "m6a.metal", "m6g.metal", "m6i.metal"}
    for e in with_setup:
        assert e.setup in shipped_profiles()
        # the profiles were fitted on runs before the change: the constant must differ
        assert getattr(builtin_profile(e.setup), e.field) != e.value
    # what the source says: EVENT_IDX roughly doubles h2g on MMIO and leaves g2h alone
    assert all(e.change_pct > 50 for e in rows if e.direction == "h2g")
    assert all(abs(e.change_pct) < 15 for e in rows if e.direction == "g2h")


def _write(tmp_path, line: str, header: str = HEADER) -> Path:
    path = tmp_path / "e.csv"
    path.write_text(header + "\n" + line + "\n")
    return path


GOOD = "s,device_event_idx=true,mmio,m6i.metal,vmm,stream,h2g,,throughput,118.4,n"


@pytest.mark.parametrize("line, header, words", [
    (GOOD, HEADER.replace(",change_pct", ""), "missing column(s) change_pct"),
    (GOOD.replace("device_event_idx", "guest_irq_ns"), HEADER, "row 1, column change"),
    (GOOD.replace("=true", "=maybe"), HEADER, "neither true/false nor an integer"),
    (GOOD.replace("118.4", "-100"), HEADER, "row 1, column msg_bytes/change_pct"),
    (GOOD.replace("118.4", "lots"), HEADER, "expected an integer and a number"),
    (GOOD.replace(",h2g,", ",g2h2g,"), HEADER, "row 1, column direction"),
    (GOOD.replace("throughput", "rtt"), HEADER, "expected throughput for stream"),
])
def test_bad_effect_rows_name_file_row_and_column(tmp_path, line, header, words):
    path = _write(tmp_path, line, header)
    with pytest.raises(InputError) as err:
        read_effects(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_prediction_is_the_profile_before_and_after_the_one_constant(tmp_path):
    (effect,) = read_effects(_write(tmp_path, GOOD.replace(",h2g,,", ",h2g,1024,")))
    prof = builtin_profile("vmm").replace(device_event_idx=False)
    predictor = Predictor(fidelity=0.3)
    out = predict_effect(effect, predictor, prof)
    assert [(p["msg_bytes"], p["vcpus"]) for p in out["points"]] == [(1024, 1), (1024, 2)]
    for p, key in zip(out["points"], effect.points()):
        assert p["before"] == simulate_key(key, prof, fidelity=0.3)["throughput"]
        assert p["after"] == simulate_key(key, prof.replace(device_event_idx=True), fidelity=0.3)["throughput"]
    assert out["predicted_pct"] == pytest.approx(np.mean([p["change_pct"] for p in out["points"]]))
    assert out["ratio_error_pct"] == pytest.approx(100 * ((1 + out["predicted_pct"] / 100) / 2.184 - 1))
    assert predictor.runs == 4  # two grid points, before and after, each simulated once
    with pytest.raises(InputError, match="already has device_event_idx = True"):
        predict_effect(effect, predictor, prof.replace(device_event_idx=True))
