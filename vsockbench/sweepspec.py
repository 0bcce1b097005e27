"""Sweep files: what to vary, validated up front, and the list of tasks it makes.

A sweep file (TOML) names a base scenario and the factors to vary::

    base = "../kata-tsi.toml"          # relative to the sweep file; or an inline [base] table
    mode = "factorial"                 # factorial (Cartesian product) | points ([[point]] tables)
    replications = 3                   # seeds run.seed, run.seed + 1, ... (same seeds at every point)
    [factors]
    design = ["single", "multi-device"]          # special: designs.apply_design
    victim_profile = ["vhost", "profiles/mine.toml"]   # special, with design: the victim's device
                                                 # profile (aggressor_profile: the aggressors' own)
    "guest.vcpus" = [1, 2]
    "flow.tsi.connections" = [1, 2, 4]           # a flow addressed by name
    "device.0.backend" = ["vhost", "vmm"]        # a device addressed by index
    "device" = [[{cid = 3}], [{cid = 3}, {cid = 4, order = 1}]]   # whole device lists

Every point is validated when the file is loaded, so a bad factor fails before any work
starts, with an :class:`InputError` naming the sweep file and the factor.  A task is a
frozen, picklable :class:`Task` (scenario dict + design + seed) whose id hashes its inputs
(:func:`sweep_tasks`); :mod:`vsockbench.sweep` runs and stores them.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, read_text
from .scenario import MAX_REPLICATIONS

__all__ = ["SweepSpec", "Task", "load_sweep", "sweep_from_dict", "sweep_tasks", "set_path", "get_path",
           "point_data", "design_profiles"]

TABLES = ("run", "guest", "host", "device", "flow")
# factors a design applies rather than paths into the scenario (designs.apply_design); profile
# paths are relative to the base scenario, as a device's profile field is
DESIGN_KEYS = ("design", "victim_profile", "aggressor_profile")
MODES = ("factorial", "points")
SWEEP_KEYS = ("base", "mode", "factors", "point", "replications", "seed", "description")


# ---------------------------------------------------------------------------- dotted paths

def _locate(data: dict, path: str):
    """(container, key) that ``path`` addresses in a scenario dict; KeyError(reason) if none."""
    if path in ("device", "flow"):
        return data, path
    root, _, rest = path.partition(".")
    if root not in TABLES:
        raise KeyError(f"unknown table {root!r}; expected design or a path under {', '.join(TABLES)}")
    if not rest:
        raise KeyError(f"{root!r} is a table; expected a field, e.g. {root}.<field>")
    if root in ("run", "guest", "host"):
        if "." in rest:
            raise KeyError(f"expected {root}.<field>, got {path!r}")
        return data.setdefault(root, {}), rest
    items = data.get(root, [])
    if root == "flow":
        names = [f.get("name") for f in items]
        # longest name first, so flow names containing dots still resolve
        for i, name in sorted(enumerate(names), key=lambda x: -len(str(x[1]))):
            if name is not None and (rest == name or rest.startswith(f"{name}.")):
                key = rest[len(name) + 1:]
                return (items, i) if not key else (items[i], _field(key, path))
        head, _, key = rest.partition(".")
        if not head.isdigit():
            raise KeyError(f"no flow named {head!r}; expected one of {', '.join(map(str, names))}")
    else:
        head, _, key = rest.partition(".")
        if not head.isdigit():
            raise KeyError(f"device {head!r}: expected a device index 0..{len(items) - 1}")
    i = int(head)
    if i >= len(items):
        raise KeyError(f"{root} index {i} out of range; the base has {len(items)} {root} table(s)")
    return (items, i) if not key else (items[i], _field(key, path))


def _field(key: str, path: str) -> str:
    if "." in key:
        raise KeyError(f"expected <table>.<name or index>.<field>, got {path!r}")
    return key


def get_path(data: dict, path: str, default=None):
    """The value at dotted ``path`` in a scenario dict (``default`` when unset)."""
    try:
        container, key = _locate(copy.deepcopy(data), path)
    except KeyError:
        return default
    if isinstance(container, list):
        return container[key]
    return container.get(key, default)


def set_path(data: dict, path: str, value) -> dict:
    """A deep copy of scenario dict ``data`` with ``path`` set to ``value``; KeyError if unknown."""
    out = copy.deepcopy(data)
    container, key = _locate(out, path)
    container[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------------- the sweep file

@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: base scenario dict, the points (factor -> value), replications."""

    path: str
    base: dict
    base_dir: str
    points: tuple[dict, ...]
    columns: tuple[str, ...]  # factor names, in file order
    replications: int = 1
    seed: int = 1
    mode: str = "factorial"


@dataclass(frozen=True)
class Task:
    """One (point, replication): everything a worker needs, picklable (no model state)."""

    task_id: str
    point: int
    replication: int
    seed: int
    scenario: dict = field(hash=False)
    design: str | None = None
    factors: tuple = ()  # ((name, value), ...) for the result row
    base_dir: str = "."
    label: str = ""
    # the design's device profiles, ((key, built-in name or absolute path), ...) (DESIGN_KEYS)
    profiles: tuple = ()


def _scalar(v):
    """A factor value as a table cell: scalars as is, lists/tables as compact JSON."""
    return v if v is None or isinstance(v, (int, float, str, bool)) else json.dumps(v, sort_keys=True, separators=(",", ":"))


def point_data(base: dict, point: dict) -> dict:
    """The base scenario dict with the point's factors set (``design`` is applied later, on the Scenario)."""
    data = base
    # whole lists first so that device.0.x / flow.x.y apply to the chosen list
    for name in sorted((k for k in point if k not in DESIGN_KEYS), key=lambda k: k not in ("device", "flow")):
        data = set_path(data, name, point[name])
    return data


def _build_point(base: dict, point: dict, base_dir: Path, label: str):
    """Scenario (validated) for ``point``; InputError carries ``where`` only, the caller adds the file."""
    from .designs import apply_design
    from .scenario import scenario_from_dict

    data = point_data(base, point)
    sc = scenario_from_dict(data, path=label, base_dir=base_dir)
    profiles = design_profiles(point, base_dir)
    if point.get("design") is not None:
        sc = apply_design(sc, point["design"], **profiles)
    elif profiles:
        raise InputError(f"{next(iter(profiles))} sets a device of a design; vary design too (or set the "
                         "devices' profile fields)")
    return data, sc


def design_profiles(point: dict, base_dir) -> dict:
    """The point's design profiles as apply_design keywords, each a built-in name or an absolute
    path (designs.design_profile), so a worker anywhere reads the same file."""
    from .designs import design_profile

    return {k: design_profile(point[k], None, k.split("_")[0], Path(base_dir))[0]
            for k in DESIGN_KEYS[1:] if point.get(k) is not None}


def _err(exc: Exception) -> str:
    return str(exc).replace("\n", " ")


def _why(value, exc: Exception) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) else _err(exc)
    return msg if value is None or isinstance(exc, KeyError) else f"{_scalar(value)}: {msg}"


def sweep_from_dict(raw: dict, *, path: str = "<sweep>", base_dir: Path | None = None) -> SweepSpec:
    """Validate a parsed sweep table; every error names ``path`` and the field or factor."""
    from .designs import DESIGNS

    base_dir = Path(base_dir or ".")
    for key in raw:
        if key not in SWEEP_KEYS:
            raise InputError(f"unknown key {key!r}; expected one of {', '.join(SWEEP_KEYS)}", path=path,
                             where=key)
    base, scen_dir = _load_base(raw.get("base"), path, base_dir)
    mode = raw.get("mode", "factorial")
    if mode not in MODES:
        raise InputError(f"mode = {mode!r}; expected factorial or points", path=path, where="mode")
    run = base.get("run", {}) if isinstance(base.get("run", {}), dict) else {}
    reps = raw.get("replications", run.get("replications", 1))
    seed = raw.get("seed", run.get("seed", 1))
    for key, val, lo in (("replications", reps, 1), ("seed", seed, 0)):
        if not isinstance(val, int) or isinstance(val, bool) or val < lo:
            raise InputError(f"{key} = {val!r}; expected an integer >= {lo}", path=path, where=key)
    if reps > MAX_REPLICATIONS:  # the task list alone would not fit (--dry-run hung making it)
        raise InputError(f"replications = {reps}; expected 1..{MAX_REPLICATIONS}", path=path, where="replications")
    factors = raw.get("factors", {})
    if not isinstance(factors, dict):
        raise InputError("expected a [factors] table of dotted path = [values]", path=path, where="factors")
    raw_points = raw.get("point", [])

    def where_of(name):
        return f"{'factors' if mode == 'factorial' else 'point'}.{json.dumps(name) if '.' in name else name}"

    if mode == "factorial":
        if raw_points:
            raise InputError("[[point]] tables need mode = \"points\"", path=path, where="point")
        for name, values in factors.items():
            if not isinstance(values, list) or not values:
                raise InputError(f"{values!r}; expected a non-empty list of values", path=path,
                                 where=where_of(name))
        names = list(factors)
        points = [dict(zip(names, combo)) for combo in itertools.product(*factors.values())]
    else:
        if factors:
            raise InputError("mode = \"points\" takes [[point]] tables, not [factors]", path=path,
                             where="factors")
        if not isinstance(raw_points, list) or not raw_points or not all(isinstance(p, dict) for p in raw_points):
            raise InputError("mode = \"points\" needs at least one [[point]] table", path=path, where="point")
        names = list(dict.fromkeys(k for p in raw_points for k in p))
        points = [dict(p) for p in raw_points]
    if "design" in names and any(n == "device" or n.startswith("device.") for n in names):
        raise InputError("design replaces the device list; do not vary devices in the same sweep", path=path,
                         where="factors.design")
    try:  # the base alone first, so its own errors are not blamed on a factor
        _build_point(base, {}, scen_dir, "")
    except InputError as exc:
        raise InputError(_err(exc), path=path, where="base") from None

    for p in points:
        if "design" in p and p["design"] not in DESIGNS:
            raise InputError(f"{p['design']!r}; expected one of {', '.join(DESIGNS)}", path=path,
                             where=where_of("design"))
    for i, point in enumerate(points):
        try:
            _build_point(base, point, scen_dir, "")
        except (InputError, KeyError) as exc:
            # name the factor that fails on its own; else the combination is at fault
            for name in point:
                solo = {name: point[name]}
                if name in DESIGN_KEYS[1:] and "design" in point:  # a profile only applies with its design
                    solo["design"] = point["design"]
                try:
                    _build_point(base, solo, scen_dir, "")
                except (InputError, KeyError) as one:
                    raise InputError(_why(point[name], one), path=path, where=where_of(name)) from None
            desc = ", ".join(f"{k} = {_scalar(v)}" for k, v in point.items())
            where = f"point {i}" if mode == "factorial" else f"point[{i}]"
            raise InputError(f"{desc}: {_why(None, exc)}", path=path, where=where) from None
    return SweepSpec(path=path, base=base, base_dir=str(scen_dir), points=tuple(points), columns=tuple(names),
                     replications=reps, seed=seed, mode=mode)


def _load_base(base, path: str, base_dir: Path) -> tuple[dict, Path]:
    if base is None:
        raise InputError("missing base; expected base = \"scenario.toml\" or a [base] table", path=path,
                         where="base")
    if isinstance(base, dict):
        return base, base_dir
    if not isinstance(base, str):
        raise InputError(f"base = {base!r}; expected a file name or a table", path=path, where="base")
    p = Path(base) if Path(base).is_absolute() else base_dir / base
    try:
        data = tomllib.loads(read_text(p, "a scenario TOML file"))
    except OSError as exc:
        raise InputError(f"base = {base!r}: cannot read {p} ({exc.strerror})", path=path, where="base") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"base = {base!r}: not valid TOML ({exc})", path=path, where="base") from None
    return data, p.resolve().parent


def load_sweep(path) -> SweepSpec:
    """Read and validate a sweep TOML file (every point is checked before anything runs)."""
    p = Path(path)
    try:
        raw = tomllib.loads(read_text(p, "a sweep TOML file"))
    except FileNotFoundError:
        raise InputError("sweep file not found", path=str(p)) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", path=str(p)) from None
    return sweep_from_dict(raw, path=str(p), base_dir=p.resolve().parent)


# ---------------------------------------------------------------------------- tasks

def _profile_digests(profiles: tuple) -> list:
    """A point's design profiles with their files' content hashes (a built-in name: ""), read once
    per point: a profile file's content is a task input, so an edited profile makes new tasks."""
    return [(k, v, hashlib.sha1(Path(v).read_bytes()).hexdigest() if Path(v).is_file() else "")
            for k, v in profiles]


def _sha1(path: Path, memo: dict) -> str:
    if path not in memo:
        memo[path] = hashlib.sha1(path.read_bytes()).hexdigest()
    return memo[path]


def _file_digests(data: dict, base_dir, memo: dict) -> list:
    """The content hashes of the files a point's scenario reads (device profile files, replayed
    traces and their flows sidecars), resolved as scenario_from_dict resolves them: the scenario
    holds only their paths, so without this an edited file would be served from the cache."""
    from .profiles import profile_file
    from .trace import flows_path

    base = Path(base_dir)
    out = []
    for i, dev in enumerate(data.get("device", [])):
        spec = dev.get("profile") if isinstance(dev, dict) else None
        path = profile_file(spec, base_dir=base) if isinstance(spec, str) else None
        if path is not None and path.is_file():
            out.append((f"device[{i}].profile", _sha1(path, memo)))
    for fl in (f for f in data.get("flow", []) if isinstance(f, dict)):
        trace = fl.get("trace")
        if not isinstance(trace, str):
            continue
        tp = Path(trace)
        if not tp.is_absolute() and (base / tp).exists():
            tp = base / tp
        for p in (tp, flows_path(tp)):
            if p.is_file():
                out.append((f"flow {fl.get('name')!r}: {p.name}", _sha1(p, memo)))
    return out


def _task_id(point: int, rep: int, scenario: dict, design, seed: int, profiles: list = (),
             files: list = ()) -> str:
    inputs = {"scenario": scenario, "design": design, "seed": seed}
    if profiles:  # _profile_digests
        inputs["profiles"] = profiles
    if files:  # _file_digests; absent when none, so such tasks keep their ids
        inputs["files"] = files
    blob = json.dumps(inputs, sort_keys=True, default=str)
    return f"p{point:04d}-r{rep:03d}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def sweep_tasks(spec: SweepSpec) -> list[Task]:
    """One task per (point, replication); seeds run.seed + replication at every point."""
    tasks = []
    memo: dict = {}  # path -> digest: a file many points read is hashed once
    for i, point in enumerate(spec.points):
        data = point_data(spec.base, point)  # validated at load; a worker re-validates (files may vanish)
        cols = tuple((n, _scalar(point[n]) if n in point else _scalar(get_path(spec.base, n))) for n in spec.columns)
        profiles = tuple(design_profiles(point, spec.base_dir).items())
        digests = _profile_digests(profiles)
        files = _file_digests(data, spec.base_dir, memo)
        for r in range(spec.replications):
            seed = spec.seed + r
            tasks.append(Task(_task_id(i, r, data, point.get("design"), seed, digests, files), i, r, seed, data,
                              point.get("design"), cols, spec.base_dir, spec.path, profiles))
    return tasks
