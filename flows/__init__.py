"""Prefect flows: the training pipeline and the commands around it. Flows call tasks only."""
