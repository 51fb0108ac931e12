"""`make faults`: the fault suite (docs/faults.md). One module per scenario."""
