"""Training over a whole dataset: run.py trains one variant into a run directory (inputs.py
reads the interactions and the store, settings.py resolves the settings, progress.py reports,
ray_train.py runs the loop on Ray Train workers, run_dir.py owns the directory); sweep.py
trains every variant and writes the report; views.py trains on compact store views."""
