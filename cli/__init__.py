"""Command lines at the edge: they read files and print JSON; the analytics stay in :mod:`compute`."""
