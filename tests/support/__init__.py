"""Helpers shared by the tests: fake servers, small published sets, process probes.

Not test modules: pytest collects nothing here; tests import them as ``tests.support.*``.
"""
