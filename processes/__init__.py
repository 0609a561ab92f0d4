"""Process machinery with no Prefect in it: lifelines that end helpers with their starter, and
which process owns an MLflow run (reaping the runs whose owner is gone)."""
