"""The mixture itself: covariance types as data, the flat parameter vector, cells of
bins, and the autograd reference model."""
