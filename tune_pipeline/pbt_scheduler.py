"""The Ray Tune scheduler for `tune.scheduler: {type: pbt}`: Ray's
PopulationBasedTraining, with new values drawn as `pbt.explore` draws them
(from the space's own distributions, inside their ranges) instead of Ray's
unbounded perturbation, and with its clock set from each trial's results on
resume, so a resumed sweep perturbs at the epochs an uninterrupted one would.

Time is epochs (`training_iteration`: one report per epoch)."""

from __future__ import annotations

import random

from ray.tune.schedulers import PopulationBasedTraining

from tune_pipeline.pbt import explore


class _Redraw:
    """Ray wants a callable per mutated key (it validates and logs them); our
    explore draws instead, but this one draws the same way."""

    def __init__(self, param):
        self.param = param

    def __call__(self):
        from tune_pipeline.sampling import sample
        return sample(self.param, random.Random())


class PbtScheduler(PopulationBasedTraining):
    def __init__(self, settings: dict, mutate: dict):
        """`settings`: the parsed block (pbt.parse); `mutate`: name -> parameters.Param."""
        super().__init__(
            time_attr="training_iteration",
            perturbation_interval=settings["perturbation_interval"],
            burn_in_period=settings["burn_in_period"],
            hyperparam_mutations={name: _Redraw(param) for name, param in mutate.items()},
            quantile_fraction=settings["quantile_fraction"],
            resample_probability=settings["resample_probability"],
            perturbation_factors=tuple(settings["perturbation_factors"]))
        self._mutate = mutate

    def _get_new_config(self, trial, trial_to_clone):
        # The random module's own stream, as Ray's choice of which trial to clone.
        return explore(trial_to_clone.config, self._mutate, random, self._resample_probability,
                       list(self._perturbation_factors))

    def on_trial_result(self, tune_controller, trial, result):
        # A trial's last epoch ends it: copying another's checkpoint then
        # would only train epochs again (Ray's PBT perturbs there too).
        epochs = trial.config.get("epochs")
        if isinstance(epochs, int) and result.get("training_iteration", 0) >= epochs:
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def _checkpoint_or_exploit(self, trial, tune_controller, upper_quantile, lower_quantile):
        # Ray keeps a trial's checkpoint of a decision point only when the
        # trial ranked in the top quantile there; the first trials to reach a
        # decision point have no population to rank in, so they could never be
        # copied until their next one (in a 9-epoch run with decisions every 3,
        # one exploit in 8 trials).  Every trial not being replaced keeps it:
        # it reported one this epoch anyway, and a PBT sweep keeps them all.
        keeps = upper_quantile if trial in upper_quantile or trial in lower_quantile else [*upper_quantile, trial]
        return super()._checkpoint_or_exploit(trial, tune_controller, keeps, lower_quantile)

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        # A trial restored by `tune resume` was perturbed last at the latest
        # interval it passed; a fresh clock would perturb it at its next epoch.
        done = (trial.last_result or {}).get("training_iteration")
        first = max(self._perturbation_interval, self._burn_in_period)  # Ray's first perturbation
        if isinstance(done, int) and done >= first:
            state = self._trial_state[trial]
            state.last_perturbation_time = done - (done - first) % self._perturbation_interval
