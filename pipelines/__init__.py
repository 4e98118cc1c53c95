"""Thin entry points, one per stage, for DVC and schedulers (``python -m pipelines.<stage>``).

Each module parses ``--params`` and calls one function of :mod:`crmscore.stages`; the package never
imports this folder.
"""
