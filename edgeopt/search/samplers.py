"""The samplers a study proposes candidates with: Optuna's TPE (the default), GP, random and NSGA-II, and edgeopt's
own grid over the space's distinct configurations."""
from __future__ import annotations

from ..errors import BadInput
from . import space as spaces

SAMPLERS = ("tpe", "gp", "random", "grid", "nsga2")
GP_STARTUP_TRIALS = 5           # as TPE's: the baseline and INT8 alone, then three at random
GRID_POINT = "edgeopt:grid_point"   # a trial's system attribute: the index of its grid point


def make(name: str | None, dims: list, seed: int, multi: bool):
    """The sampler `--sampler name` asks for over `dims`; unnamed, TPE for one objective and NSGA-II for a Pareto
    front (multi). Each named one takes a Pareto front as it is: Optuna's TPE and GP are multi-objective too."""
    import optuna

    name = named(name, multi)
    if name not in SAMPLERS:
        raise BadInput(f"--sampler {name}: expected one of {', '.join(SAMPLERS)}")
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return _grid(dims, seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        # A Gaussian process per budget as well as for the objective: before anything is feasible it proposes
        # what is likeliest to meet every budget, where constrained TPE ranks by summed excess and keeps to the
        # least-violating corner (docs/benchmarks.md, "a modelled landscape"). Needs torch and scipy.
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise BadInput("--sampler gp needs PyTorch and SciPy: pip install 'edgeopt[torch]'") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=GP_STARTUP_TRIALS)
    # The budgets reach the samplers as the trials' constraints (Trial.set_constraint in runner.Runner._record).
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                      n_startup_trials=5)


def named(name: str | None, multi: bool) -> str:
    """The sampler `--sampler name` means: unnamed, TPE for one objective and NSGA-II for a Pareto front."""
    return name or ("nsga2" if multi else "tpe")


def _grid(dims: list, seed: int):
    """A grid over the space's distinct configurations (space.grid_points), in an order shuffled by the seed.
    Not Optuna's GridSampler: its grid is the product of every dimension, where a transform's options while it is
    off and an INT8-only option without INT8 repeat one configuration many times (benchmarks/sampler_measured.py's
    150 configurations were 24,576 points); its after_trial also calls Study.stop(), which raises outside
    study.optimize(), and a study here asks and tells. The loop detects the end (runner.Runner._grid_done)."""
    import numpy as np
    import optuna

    class Grid(optuna.samplers.BaseSampler):
        def __init__(self):
            self.points = spaces.grid_points(dims)
            self.rng = np.random.default_rng(seed)
            self.rng.shuffle(self.points)
            self.params = {}   # a point's trial parameters (space.params), made when a trial first takes it
            self.fallback = optuna.samplers.RandomSampler(seed=seed)   # what no point sets (an enqueued trial)

        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def before_trial(self, study, trial) -> None:
            if "fixed_params" in trial.system_attrs:   # enqueued (the baseline, INT8 alone): not a grid point
                return
            taken = {t.system_attrs.get(GRID_POINT) for t in study.get_trials(deepcopy=False)}
            free = [i for i in range(len(self.points)) if i not in taken]
            # every point taken: the grid is done (the loop stops); a proposal past it repeats a point
            point = free[0] if free else int(self.rng.integers(len(self.points)))
            study._storage.set_trial_system_attr(trial._trial_id, GRID_POINT, point)

        def sample_independent(self, study, trial, param_name, param_distribution):
            point = trial.system_attrs.get(GRID_POINT)
            if point is not None and point not in self.params:
                self.params[point] = spaces.params(dims, self.points[point])
            if point is None or param_name not in self.params[point]:
                return self.fallback.sample_independent(study, trial, param_name, param_distribution)
            return self.params[point][param_name]

    return Grid()


def models_every_dimension(sampler) -> bool:
    """Optuna's GPSampler searches only the dimensions every finished trial has (its intersection search
    space): the baseline and a transform that is off must still suggest them."""
    import optuna
    return isinstance(sampler, optuna.samplers.GPSampler)
