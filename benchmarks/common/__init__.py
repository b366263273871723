"""Helpers shared by the benchmark scripts: managed server processes, `edgeinfer bench` runs, rate search."""
