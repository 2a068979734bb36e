"""Helpers shared by the tests and the benchmarks: real servers, media, checkpoints, fixtures."""
