"""Latency, parity and fusion-quality benchmarks, written as reports."""
