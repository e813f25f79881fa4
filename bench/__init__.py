"""Benchmarks: run on demand (`python -m bench.<name>`); each writes bench/results/<name>.json."""
