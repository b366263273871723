"""Benchmarks: scripts run from the repository root, and the helpers they share (benchmarks.common)."""
