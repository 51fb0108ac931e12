"""A train on a trip of the tests' static feed with its forecast, as the load-ahead feeds
(TripUpdates, SIRI-ET) are built from: the feed, the run, a forecast document and a train's view
(made by the tests, never an operator's)."""

import datetime

from occupancy import fleet, schedule
from occupancy.forecast import rows
from tests import schedule_feed

UTC = datetime.timezone.utc
# The stops r1 calls at, which schedule_feed's stops.txt leaves out.
STATIC = {
    **schedule_feed.WITH_STOPS,
    "stops.txt": schedule_feed.WITH_STOPS["stops.txt"]
    + "".join(f"{s},Stop {s},47.{i},8.{i}\n" for i, s in enumerate("abcd", start=1)),
}
FEED = schedule.Schedule(STATIC)
DAY = datetime.date(2026, 12, 3)  # a Thursday: r1 runs a 08:00, b 08:10, c 08:20, d 08:30 (Zurich)
RUN = FEED.run(FEED.trips["r1"], DAY)
LEFT_B = RUN.at(8 * 3600 + 12 * 60)  # 08:12: it has left b


def forecast_document(loads):
    return rows.trip_document(
        [
            {
                "service_date": DAY,
                "trip_id": "r1",
                "stop_sequence": sequence,
                "stop_id": stop,
                "predicted_load": load,
                "predicted_load_p10": None,
                "predicted_load_p90": None,
                "occupancy_percentage": None,
                "occupancy_status": None,
                "model": "level-hgb",
                "history_days": 56,
                "forecast_start": DAY,
            }
            for (sequence, stop), load in zip(((1, "a"), (2, "b"), (3, "c"), (4, "d")), loads)
        ]
    )


def view(on_board, capacity=200):
    realtime = {"current_value": on_board, "last_updated": LEFT_B, "devices_seen": {"d1": {"last_seen": LEFT_B}}}
    return fleet.train_view("t1", realtime, {"capacity": capacity, "name": "IC 1"}, LEFT_B)
