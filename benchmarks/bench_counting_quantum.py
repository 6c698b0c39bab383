"""How often real histograms are read as counts by ``_noise.counting_quantum``.

Run: python benchmarks/bench_counting_quantum.py      (about ten seconds)

3,000 seeded histograms (``np.histogram``, counts and ``density=True``) of 30 to 20,000 samples
(log-uniform) of 1 to 4 Gaussian components (sds log-uniform in [0.05, 3], means uniform in
[-10, 10], Dirichlet weights) in 10 to 400 bins (log-uniform): the number not read as counts
times one quantum, by kind and sample size. Every histogram is counts (times one quantum), so
each is a miss of the test that tells counts from values rounded to a quantum.

Then the other way: 1,000 seeded densities that are not counts but are multiples of one quantum
(a mixture as above on 100 to 500 points, white Gaussian noise of 0.3% to 5% of its peak
(log-uniform), clipped at zero and rounded to 1e-3 or 1e-2 of the peak, as values written with
a few decimals are): the number read as counts, by the noise in quanta.

Last, spectra whose every channel holds many counts (an XPS or gamma spectrum's continuum):
1,000 seeded spectra of 100 to 500 channels, 1 to 4 lines (sds log-uniform in [1, 10]
channels) on a continuum of 70 to 2,000 (log-uniform) up to 30 times higher at the lines'
peaks; half Poisson counts (the number read as counts), half integers that are not (the
clean values plus Gaussian noise of 0.2 to 5 times the Poisson sd, log-uniform, rounded: an
ADC's read-out), read as counts by that ratio (near 1 they scatter as counts do).
"""

import numpy as np

from skdensityfit._data.noise import Grid, counting_quantum


def main():
    rng = np.random.default_rng(123)
    total, missed = {}, {}
    for _ in range(3000):
        n = int(np.exp(rng.uniform(np.log(30), np.log(20000))))
        k = rng.integers(1, 5)
        means = rng.uniform(-10, 10, k)
        sds = np.exp(rng.uniform(np.log(0.05), np.log(3), k))
        component = rng.choice(k, n, p=rng.dirichlet(np.ones(k)))
        samples = rng.normal(means[component], sds[component])
        n_bins = int(np.exp(rng.uniform(np.log(10), np.log(400))))
        density = rng.random() < 0.5
        values, edges = np.histogram(samples, bins=n_bins, density=density)
        centres = 0.5 * (edges[1:] + edges[:-1])
        quantum = counting_quantum(values.astype(float), Grid.of(centres[:, None]))
        size = "n < 300" if n < 300 else ("n < 3,000" if n < 3000 else "n >= 3,000")
        key = ("density=True" if density else "counts", size)
        total[key] = total.get(key, 0) + 1
        missed[key] = missed.get(key, 0) + (quantum is None)
    for key in sorted(total):
        print(f"{key[0]:13s} {key[1]:11s} not read as counts: {missed[key]} of {total[key]}")
    print(f"all: {sum(missed.values())} of {sum(total.values())}")
    total, read = {}, {}
    for _ in range(1000):
        n = int(rng.integers(100, 501))
        k = rng.integers(1, 5)
        grid = np.linspace(-12, 12, n)
        sds = np.exp(rng.uniform(np.log(0.1), np.log(3), k))
        clean = rng.dirichlet(np.ones(k)) @ np.exp(
            -0.5 * ((grid - rng.uniform(-10, 10, k)[:, None]) / sds[:, None]) ** 2
        )
        clean /= clean.max()
        noise = np.exp(rng.uniform(np.log(0.003), np.log(0.05)))
        step = rng.choice([1e-3, 1e-2])
        values = np.round(np.clip(clean + noise * rng.normal(size=n), 0, None) / step) * step
        quantum = counting_quantum(values, Grid.of(grid[:, None]))
        quanta = noise / step
        key = (
            "noise < 3 quanta"
            if quanta < 3
            else ("noise < 10 quanta" if quanta < 10 else "noise >= 10 quanta")
        )
        total[key] = total.get(key, 0) + 1
        read[key] = read.get(key, 0) + (quantum is not None)
    for key in sorted(total):
        print(f"rounded, {key:19s} read as counts: {read[key]} of {total[key]}")
    print(f"rounded, all: {sum(read.values())} of {sum(total.values())}")

    total, read = {}, {}
    for _ in range(1000):
        n = int(rng.integers(100, 501))
        k = rng.integers(1, 5)
        channels = np.arange(n, dtype=float)
        sds = np.exp(rng.uniform(np.log(1.0), np.log(10.0), k))
        lines = rng.dirichlet(np.ones(k)) @ np.exp(
            -0.5 * ((channels - rng.uniform(0.1 * n, 0.9 * n, k)[:, None]) / sds[:, None]) ** 2
        )
        continuum = np.exp(rng.uniform(np.log(70), np.log(2000)))
        clean = continuum * (1.0 + rng.uniform(1.0, 30.0) * lines / lines.max())
        if rng.random() < 0.5:
            values, key = rng.poisson(clean).astype(float), "Poisson counts"
        else:
            ratio = np.exp(rng.uniform(np.log(0.2), np.log(5.0)))
            noisy = clean + ratio * np.sqrt(clean) * rng.normal(size=n)
            values = np.round(np.maximum(noisy, 0.0))
            key = (
                "integers, sd < 0.5 Poisson's"
                if ratio < 0.5
                else ("integers, sd 0.5-2 Poisson's" if ratio < 2 else "integers, sd > 2 Poisson's")
            )
        quantum = counting_quantum(values, Grid.of(channels[:, None]))
        total[key] = total.get(key, 0) + 1
        read[key] = read.get(key, 0) + (quantum is not None)
    for key in sorted(total):
        print(f"continuum, {key:29s} read as counts: {read[key]} of {total[key]}")


if __name__ == "__main__":
    main()
