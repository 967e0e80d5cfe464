"""Running the build flow on Dask through prefect-dask (the optional ``dask`` extra).

Each shard task runs on a Dask worker (the worker builds the shard itself, no process pool
there), so a cluster of many machines builds many shards at once. Dask workers run Prefect's task
engine, so they must all report to one Prefect API: without ``PREFECT_API_URL`` Prefect would
start a temporary server in every worker process. For a local cluster this module starts one
temporary server and hands its URL to the workers; a remote cluster needs a real server.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from datagen.config import BuildConfig
from datagen.errors import UsageError

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

__all__ = ["dask_task_runner", "prefect_api_for_dask", "workers_may_fork"]


def dask_task_runner(cfg: BuildConfig, address: str | None = None) -> DaskTaskRunner:
    """A Dask task runner: the cluster at ``address``, else a local one of ``cfg.workers``."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise UsageError("--runner dask needs prefect-dask: pip install "
                         "'codedance-datagen[dask]'") from None
    if address:
        if not address.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://")):
            raise UsageError(f"--address {address!r}: give a Dask scheduler address such as "
                             "tcp://10.0.0.5:8786")
        return DaskTaskRunner(address=address)
    # One thread per worker process: a shard is CPU-bound and drives its own sandbox.
    return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


@contextlib.contextmanager
def workers_may_fork() -> Iterator[None]:
    """Within this block, a local cluster's worker processes are not daemonic.

    multiprocessing refuses children to a daemonic process, and the process-mode sandbox's
    workers are children of a forkserver (bwrap jails are plain subprocesses, fine either
    way). The nanny still kills its worker when it stops. A remote cluster's workers follow
    their own configuration: start them with ``--no-nanny`` or ``distributed.worker.daemon:
    false`` where bwrap cannot run.
    """
    import dask

    with dask.config.set({"distributed.worker.daemon": False}):
        yield


@contextlib.contextmanager
def prefect_api_for_dask(address: str | None) -> Iterator[None]:
    """Within this block, Dask workers and this process share one Prefect API."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value()
    if not url:
        if address:
            raise UsageError("--address: the Dask workers need a Prefect server they can "
                             "reach; start one (prefect server start) and set PREFECT_API_URL")
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        server.start()  # stopped at exit; this process's own client reuses it meanwhile
        url = server.api_url
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url  # the local cluster's worker processes inherit it
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
