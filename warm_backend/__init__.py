"""A warm fork-server MLflow project backend: `mlflow.projects.run(..., backend="warm-fork")`.

One server process per flow process pre-imports what the entry points import (mlflow, pandas,
pyarrow, scikit-learn, torch, wandb, the steps.* modules) and forks one child per entry-point run,
so each step still runs isolated in its own process but skips the interpreter start and imports.

    protocol.py  command parsing and the JSON-lines messages (pure)
    server.py    the fork server (`python -m warm_backend.server`)
    client.py    starts/restarts the server, and the Popen-like handle of a forked child
    backend.py   the MLflow `AbstractBackend` plugin (entry point group mlflow.project_backend)
"""
