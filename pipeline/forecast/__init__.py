"""The forecast job (batch): TIDES history + the GTFS static feed -> the load ahead per trip
and stop (docs/forecast.md). `python -m pipeline.forecast --help`."""
