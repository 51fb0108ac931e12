"""The GTFS-Realtime OccupancyStatus names this system publishes, in increasing order of load
(occupancy.fleet's live levels, the forecast's predicted ones)."""

OCCUPANCY_LEVELS = (
    "EMPTY",
    "MANY_SEATS_AVAILABLE",
    "FEW_SEATS_AVAILABLE",
    "STANDING_ROOM_ONLY",
    "CRUSHED_STANDING_ROOM_ONLY",
    "FULL",
)
NO_DATA_AVAILABLE = "NO_DATA_AVAILABLE"
