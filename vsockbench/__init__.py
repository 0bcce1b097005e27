"""vsockbench: which vsock design, and what does it buy?

A SimPy discrete-event model of guest and host vsock (single device,
multi-device, multi-queue; vhost, vhost-user and VMM backends), a real-socket
measurement harness, calibration/validation against measured runs, and the
comparisons and plots built on them.

The pipeline, one module per stage::

    scenario/profiles/trace -> simulate (model/) -> metrics -> isolation/compare -> report/store
    measure -> measured runs -> calibrate -> profiles;  validate: predicted vs measured
    accuracy: the held-out errors of the shipped profiles, quoted by compare's report
    sweep/plan: many simulations on processes or Dask

The names below load on first use (PEP 562), so ``import vsockbench`` stays
cheap for the command line.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # inputs
    "InputError": "errors",
    "Profile": "profiles", "builtin_profile": "profiles", "load_profile": "profiles", "save_profile": "profiles",
    "Scenario": "scenario", "load_scenario": "scenario", "scenario_from_dict": "scenario",
    # the model
    "SimResult": "simulate", "simulate": "simulate", "simulate_replications": "simulate",
    # designs and isolation
    "DESIGNS": "designs", "apply_design": "designs",
    "isolation_runs": "isolation", "summarize": "isolation", "significance": "isolation",
    # the main job, results store, plots
    "compare": "compare", "CompareResult": "compare", "shipped_workloads": "compare",
    "save_run": "store", "load_run": "store", "list_runs": "store",
    "write_report": "report", "plot_latency_cdf": "report", "plot_throughput": "report",
    "plot_cpu_threads": "report", "plot_slowdown": "report",
    # measured runs, calibration, validation
    "read_measured": "measured", "read_measured_files": "measured",
    "calibrate": "calibrate", "CalibrationResult": "calibrate", "validate": "validate",
    "code_constants": "kernels",
    # sweeps and capacity planning
    "load_sweep": "sweep", "sweep_from_dict": "sweep", "run_sweep": "sweep", "SweepSpec": "sweep",
    "SweepResult": "sweep", "plan_capacity": "plan", "plot_plan": "plan", "PlanResult": "plan",
    # traces
    "Trace": "trace", "read_trace": "trace", "write_trace": "trace", "generate": "trace",
    "import_pcap": "trace", "export_pcap": "trace",
    # measurement
    "run_local": "measure", "run_client": "measure", "serve": "measure", "MeasureError": "measure",
}

__all__ = sorted([*_EXPORTS, "__version__"])

# A function named like its module must be bound eagerly: importing the submodule
# later would otherwise set the package attribute to the module.
from .calibrate import calibrate  # noqa: E402, F401
from .compare import compare  # noqa: E402, F401
from .simulate import simulate  # noqa: E402, F401
from .validate import validate  # noqa: E402, F401


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vsockbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
