"""Prefect tasks: each wraps one MLflow entry point (or one tracking-store query) as a unit.

Tasks know an entry point only by its name, parameters and outputs; they never import the
entry points' code.
"""
