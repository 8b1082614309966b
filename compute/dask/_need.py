"""Imported first by :mod:`compute.dask`: without Dask, the error names the extra that installs it."""

from compute.extras import need

need("dask.dataframe", "compute.dask (the Dask engine)")
