import numpy as np
import pytest


@pytest.fixture
def grid_2d():
    """A 64 x 64 grid on [-10, 10]^2, shape (4096, 2)."""
    axis = np.linspace(-10.0, 10.0, 64)
    return np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
