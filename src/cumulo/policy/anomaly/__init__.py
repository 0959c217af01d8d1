"""Anomaly detectors: pure and streaming (state in, state and verdict out; constant work per point)."""
