"""Readers and torch Datasets for audio and sensor streams."""
