"""Command line: ``skdensityfit demo``."""

import argparse
import sys

import numpy as np


def _demo(args):
    from ._estimator import DensityGMM
    from ._examples import make_writeup_problem

    grid, density, truth = make_writeup_problem()
    model = DensityGMM(n_components=2, random_state=args.random_state).fit(grid, density)
    stds = np.sqrt(model.covariances_.ravel())
    print("The write-up's problem: 2 Gaussians tabulated at 75 points on [0, 25).")
    print(f"{'parameter':<12}{'true':>14}{'recovered':>20}")
    for name, true, got in (
        ("mean", truth["means"], model.means_.ravel()),
        ("std", truth["stds"], stds),
        ("weight", truth["weights"], model.weights_),
    ):
        for k in range(2):
            print(f"{name + f'[{k}]':<12}{true[k]:>14.6f}{got[k]:>20.10f}")
    print(f"{'scale':<12}{1.0:>14.6f}{model.scale_:>20.10f}")
    print(
        f"R^2 = {model.score(grid, density):.12f}, loss = {model.loss_:.3g}, "
        f"converged = {model.converged_}, iterations = {model.n_iter_}"
    )
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="skdensityfit",
        description="Fit Gaussian mixtures to densities known on a grid.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="fit the built-in example (the write-up's two-Gaussian problem)"
    )
    demo.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
