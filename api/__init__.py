"""The HTTP API: fleet registry (the prototype's list_devices / update_train) and occupancy reads.

A thin layer over the Beam-free core: `adapters.registry` for the fleet,
`occupancy.fleet` for occupancy now, `history` documents for occupancy over time.
"""
