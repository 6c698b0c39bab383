"""Faults lose nothing: a Dask worker killed in the middle of fit_many costs time, not rows."""

import os
import signal
import threading
import time
import warnings

import joblib
import numpy as np
import pytest

from skdensityfit import DensityGMM, fit_many
from skdensityfit._examples import drifting_mixture_series_1d, mixture_densities_1d

GRID = np.linspace(-5.0, 25.0, 200)


def _densities(n):
    rng = np.random.default_rng(30)
    weights, means, stds = drifting_mixture_series_1d(rng, n, 2)
    return mixture_densities_1d(GRID, weights, means, stds)


@pytest.mark.parametrize("method", ["loop", "vectorized"])
def test_a_worker_killed_mid_batch_costs_time_not_rows(cluster_client, method):
    n = 240 if method == "loop" else 2400
    Y = _densities(n)
    Y[11] = 0.0  # a failed row stays a failed row
    estimator = DensityGMM(2, random_state=0)
    chunk_size = 10 if method == "loop" else 80
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        serial = fit_many(GRID, Y, estimator, chunk_size=chunk_size, method=method)

    worker_pids = cluster_client.run(os.getpid)
    victim = sorted(worker_pids.values())[0]
    done = threading.Event()
    killed = []

    def kill_when_the_batch_runs():
        # wait until chunks are being fitted on both workers, then kill one
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and not done.is_set():
            processing = cluster_client.processing()
            if sum(len(keys) for keys in processing.values()) >= 2:
                time.sleep(0.3)
                if not done.is_set():
                    os.kill(victim, signal.SIGKILL)
                    killed.append(time.monotonic())
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_the_batch_runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        killer.start()
        try:
            with joblib.parallel_config(backend="dask"):
                distributed = fit_many(GRID, Y, estimator, chunk_size=chunk_size, method=method)
        finally:
            done.set()
            killer.join()
    assert killed, "the worker was not killed while the batch ran"
    for name in ("weights", "means", "covariances", "scale", "loss", "failed", "fallback"):
        np.testing.assert_array_equal(getattr(distributed, name), getattr(serial, name), name)
    assert distributed.messages == serial.messages
    assert distributed.failed.tolist() == [i == 11 for i in range(n)]
