"""Clients of outside services shared by both sides of the project.

Neither layer may import the other (an entry point never imports Prefect, a task knows an entry
point only by its name), yet both talk to the same services: `get_data` downloads from OSS and
`flows.upload_data` uploads to it. The one way to build such a client, read its credentials and
classify its failures lives here, with no Prefect and no step code. The one MLflow piece is
`oss_artifacts.py`, MLflow's artifact-store plugin for oss:// built on that client; `oss.py`
itself does not import MLflow.
"""
