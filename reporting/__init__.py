"""What a run reports to people: the pipeline and sweep summaries and the Prefect artifacts.

Flows call these after their tasks finished; nothing here runs a step."""
