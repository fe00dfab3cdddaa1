"""Hyperparameter search over `train` on Ray Tune (`linkedout tune`): the search space
(space.py), one trial (trial.py), the driver (search.py), the tables and the chosen config
(results.py)."""
