"""`make faults`: the fault suite (README, "Faults"). One module per scenario."""
