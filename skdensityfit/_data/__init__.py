"""What is known of the data: input checks, quadrature weights, noise models."""
