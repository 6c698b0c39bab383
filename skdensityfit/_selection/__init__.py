"""Choosing the number of components: held-out rules, the paths along K and their
criteria, DensityGMMCV."""
