"""Tests of clients/fsspec_fs.py: fsspec's own abstract suites and ours, against `ninep serve`."""
