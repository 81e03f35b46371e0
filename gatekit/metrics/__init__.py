"""Shadow analytics: functions from frames to tidy polars frames. They draw nothing (charts: gatekit.charts)."""
