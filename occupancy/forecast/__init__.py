"""Occupancy ahead: the departure load of each trip at each stop on the days to come
(docs/forecast.md).

* `history`: TIDES stop_visits + trips_performed -> observations; the schedule -> the slots to
  forecast (a trip on a date at a stop);
* `baseline`: the two references every forecast is measured against (the same weekday last
  week, the mean of the last 4 same weekdays);
* `model`: the learned model (a level and its trend, apart from the shape the trees learn);
* `rows`: predictions -> the forecast table's rows (load, p10-p90, percentage, GTFS-RT level).

Plain Python, numpy and scikit-learn: no Beam, no cloud client.
"""
