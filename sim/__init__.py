"""Simulated workloads: door devices (`simulator`) and service days with door-sensor error
(`service_day`), for `make run`, `make bench`, `make faults` and `make accuracy`. Not shipped
to devices or workers."""
