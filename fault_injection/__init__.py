"""Faults on demand, shared by the tests and `make bench-faults`: a loopback HTTP source that
misbehaves as told, a process killed at a chosen moment, promotions killed inside their critical
section. Nothing here runs in the pipeline itself."""
