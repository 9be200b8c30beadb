"""Simulated workloads for ajan's tests and demos.

`ajan.simulate.generator` serves a stable and a canary service's metrics to a real Prometheus,
with faults injected at run time over HTTP. Nothing is imported here: the generator runs as
``python -m ajan.simulate.generator``, and a package that imported it first would make runpy warn
that the module is executed twice.
"""
