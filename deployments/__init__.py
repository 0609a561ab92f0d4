"""Deployments as code: how the pipeline runs unattended on a schedule."""
