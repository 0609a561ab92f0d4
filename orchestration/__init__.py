"""How the flows run the pipeline: its configuration (composed once, validated), the step table,
the runner every step call goes through, sweep planning and the Dask cluster, process set-up.

flows/ holds the Prefect flows and their command lines; they call into this package, which
calls the tasks."""
