"""tune_pipeline: hyperparameter sweeps for image classifiers on Ray Tune.

Modules: `config` (the trial schema), `models` (registry), `data` (datasets as
tensors), `augment` (batched transforms, transform scripts), `train` (the
loop, no Ray), `space`/`sweep`/`trainable` (Ray Tune), `export` (results).
"""

__version__ = "0.1.0"
