"""Straightforward reference implementations that the benchmarks compare ForenX against."""
