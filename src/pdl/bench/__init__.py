"""Measuring loaders: the experiment, its timing, memory, the typed records and their files, tune, decode."""
