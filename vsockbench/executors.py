"""Where sweep and plan tasks run: in this process, a process pool, or a Dask cluster.

All three look the same to callers: :func:`open_pool` is a context manager yielding a
:class:`Pool` whose :meth:`Pool.unordered` runs a picklable function over picklable items
and yields ``(item, result, exception)`` as each finishes.  An exception there means the
task could not run at all (its worker died); exceptions *inside* a task are the task's own
business (``sweep.run_task`` turns them into rows).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator

from .errors import InputError

__all__ = ["EXECUTORS", "Pool", "open_pool", "execute", "usable_cpus"]

EXECUTORS = ("serial", "process", "dask")


class Pool:
    """A running executor: ``kind`` is serial, process or dask; ``workers`` how many run at once."""

    def __init__(self, kind: str, workers: int, backend=None):
        self.kind, self.workers, self._backend = kind, workers, backend

    def unordered(self, fn: Callable, items: Iterable) -> Iterator[tuple]:
        items = list(items)
        if self.kind == "serial":
            for it in items:  # exceptions propagate: in-process there is no dead worker to report
                yield it, fn(it), None
            return
        if self.kind == "process":
            futs = {self._backend.submit(fn, it): it for it in items}
            waiter = cf.as_completed(futs)
        else:
            from distributed import as_completed

            # pure=False: equal items are still separate runs; key by position for the map back
            futs = {self._backend.submit(fn, it, pure=False): it for it in items}
            waiter = as_completed(list(futs))
        try:
            for fut in waiter:
                try:
                    out = (futs[fut], fut.result(), None)
                except Exception as exc:  # worker died / cancelled: report, keep going
                    out = (futs[fut], None, exc)
                yield out
        finally:
            for fut in futs:  # on Ctrl-C or an early break, do not leave work queued
                fut.cancel()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which taskset or a container's cpuset
    narrows; ``os.cpu_count()`` counts the machine's): the default number of workers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve(executor: str, workers: int | None, scheduler: str | None) -> tuple[str, int]:
    if scheduler:
        if executor not in ("dask", "process"):
            raise InputError(f"--scheduler needs the dask executor, not {executor!r}")
        executor = "dask"
    if executor not in EXECUTORS:
        raise InputError(f"executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}; expected >= 1")
    n = workers or usable_cpus()
    if executor == "process" and n == 1:
        executor = "serial"  # one worker: skip pickling and process start-up
    return executor, n


@contextlib.contextmanager
def open_pool(executor: str = "process", workers: int | None = None, scheduler: str | None = None):
    """Start (and on exit stop) the executor; an existing Dask scheduler is only connected to."""
    kind, n = resolve(executor, workers, scheduler)
    if kind == "serial":
        yield Pool("serial", 1)
    elif kind == "process":
        with cf.ProcessPoolExecutor(max_workers=n) as ex:
            try:
                yield Pool("process", n, ex)
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)
                raise
    else:
        from distributed import Client, LocalCluster

        with contextlib.ExitStack() as stack:
            if scheduler:
                try:
                    client = stack.enter_context(Client(scheduler, timeout="20s"))
                except (OSError, TimeoutError) as exc:
                    raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
                n = max(1, sum(client.nthreads().values()))
            else:
                # one thread per worker process: SimPy runs are pure Python (the GIL would serialise threads)
                cluster = stack.enter_context(LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                           dashboard_address=None))
                client = stack.enter_context(Client(cluster))
            yield Pool("dask", n, client)


def execute(fn: Callable, items: list, store: Callable, *, executor: str = "process", workers: int | None = None,
            scheduler: str | None = None, progress: bool = True, desc: str = "tasks") -> int:
    """Run ``fn`` over ``items``, calling ``store(result)`` as each finishes; return how many were lost."""
    from tqdm.auto import tqdm

    lost = 0
    if not items:
        return 0
    with open_pool(executor, workers, scheduler) as pool, \
            tqdm(total=len(items), desc=desc, unit="task", disable=not progress, dynamic_ncols=True) as bar:
        bar.set_postfix_str(f"{pool.kind} x{pool.workers}", refresh=False)
        for _item, result, exc in pool.unordered(fn, items):
            if exc is not None:
                lost += 1
                bar.write(f"task lost (its worker failed, a rerun computes it): {type(exc).__name__}: {exc}")
            else:
                store(result)
            bar.update(1)
    return lost
