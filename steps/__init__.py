"""The MLflow entry points' own code: one module per entry point, grouped by stage.

Nothing here imports Prefect: every entry point is a plain program driven by its MLproject
parameters, so it runs the same under `mlflow run`, the Prefect flow, or a shell.
"""
