import contextlib

import numpy as np
import pytest


@pytest.fixture
def grid_2d():
    """A 64 x 64 grid on [-10, 10]^2, shape (4096, 2)."""
    axis = np.linspace(-10.0, 10.0, 64)
    return np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])


@contextlib.contextmanager
def local_cluster_client():
    """A Dask client of a real 2-worker LocalCluster on loopback (skips without distributed)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def dask_client():
    """One cluster for a whole test module."""
    with local_cluster_client() as client:
        yield client


@pytest.fixture
def cluster_client():
    """A cluster of the test's own (a test may kill its workers)."""
    with local_cluster_client() as client:
        yield client
