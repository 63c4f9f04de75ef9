"""The bayes searcher: Ray Tune's OptunaSearch, able to take back a trial
that `tune resume --restart-errored` reruns.

Ray reruns a failed trial under a new trial id that the searcher never
suggested; OptunaSearch looks every id up and stopped the resumed sweep with
a KeyError.  Here a rerun's results do not steer pruning (the study has no
trial for it), and its final value is added to the study as an evaluated
point with the configuration it ran, so the search learns from it.
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class RestartableOptuna(OptunaSearch):
    def _suggested(self, trial_id: str) -> bool:
        return trial_id in self._ot_trials

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._suggested(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._suggested(trial_id):
            super().on_trial_complete(trial_id, result, error)
            return
        value = (result or {}).get(self.metric)
        config = (result or {}).get("config") or {}
        if error or not isinstance(value, (int, float)) or not isinstance(self._space, dict):
            return  # a failed rerun: the study counted the trial's first failure already
        if not all(key in config for key in self._space):
            return
        self.add_evaluated_point({key: config[key] for key in self._space}, value)
