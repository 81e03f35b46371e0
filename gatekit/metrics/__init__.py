"""Shadow analytics: a loaded run (`gatekit.run.Run`) in, tidy polars frames out; the building blocks take
the run's frames. They draw nothing (charts: gatekit.charts)."""
