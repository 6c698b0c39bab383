"""The fitting engine: the compiled kernel, its rows and problems, starts, fits of any
number of densities, standard errors, predictions."""
