"""Benchmarks: print sizes, seconds and ratios against baselines run in the same invocation."""
