"""A small GTFS static feed made by the tests (never a real operator's): train 1832 runs one
trip on weekdays and another at weekends, 1999 leaves at 23:30 and arrives past midnight,
the weekday service is removed on 2026-12-25 and a special service added on 2026-12-08."""

import datetime
from zoneinfo import ZoneInfo

from occupancy.schedule import Schedule

FILES = {
    "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\na,Demo Rail,https://example.com,Europe/Zurich\n",
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
    "basel,Basel SBB,47.547,7.589\nzurich,Zuerich HB,47.378,8.540\nchur,Chur,46.853,9.529\n",
    "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_type\nic3,a,IC 3,Basel - Chur,2\n",
    "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
    "weekdays,1,1,1,1,1,0,0,20260101,20271231\n"
    "weekends,0,0,0,0,0,1,1,20260101,20271231\n",
    "calendar_dates.txt": "service_id,date,exception_type\nweekdays,20261225,2\nspecial,20261208,1\n",
    "trips.txt": "route_id,service_id,trip_id,trip_short_name,trip_headsign,direction_id\n"
    "ic3,weekdays,ic1832-wd,1832,Chur,0\n"
    "ic3,weekends,ic1832-we,1832,Chur,0\n"
    "ic3,weekdays,ic1999-night,1999,Basel SBB,1\n"
    "ic3,special,ic1850-special,1850,Chur,0\n",
    "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
    "ic1832-wd,08:00:00,08:00:00,basel,1\nic1832-wd,09:00:00,09:02:00,zurich,2\n"
    "ic1832-wd,10:15:00,10:15:00,chur,3\n"
    "ic1832-we,09:00:00,09:00:00,basel,1\nic1832-we,11:15:00,11:15:00,chur,2\n"
    "ic1999-night,23:30:00,23:30:00,chur,1\nic1999-night,25:10:00,25:10:00,basel,2\n"
    "ic1850-special,12:00:00,12:00:00,basel,1\nic1850-special,14:15:00,14:15:00,chur,2\n",
}

# Two more weekday trips of train 2001 and 2003 with four stops (a, b, c, d), for the stop visits.
WITH_STOPS = {
    **FILES,
    "trips.txt": FILES["trips.txt"] + "ic3,weekdays,r1,2001,Chur,0\nic3,weekdays,r2,2003,Chur,0\n",
    "stop_times.txt": FILES["stop_times.txt"]
    + "r1,08:00:00,08:00:00,a,1\nr1,08:10:00,08:10:00,b,2\nr1,08:19:00,08:20:00,c,3\nr1,08:30:00,08:30:00,d,4\n"
    + "r2,09:00:00,09:00:00,d,1\nr2,09:30:00,09:30:00,a,2\n",
}


ZONE = ZoneInfo("Europe/Zurich")


def _day_begins(day: datetime.date) -> datetime.datetime:
    """Where a service day's GTFS times count from: noon minus 12 h (not midnight, which differs
    by an hour on the days clocks change)."""
    noon = datetime.datetime.combine(day, datetime.time(12), tzinfo=ZONE)
    return noon.astimezone(datetime.timezone.utc) - datetime.timedelta(hours=12)


def service_day(moment: datetime.datetime) -> datetime.date:
    """The service day the trips of `files_running_at(moment)` run on: the latest whose times
    have begun by `moment` (the feed's date, but the day before from 00:00 to 01:00 on the night
    clocks go back, when the day's times begin at 01:00; a test that reads the clock again may
    be past midnight, where they still run on this one)."""
    day = moment.astimezone(ZONE).date()
    return day if _day_begins(day) <= moment else day - datetime.timedelta(days=1)


def files_running_at(moment: datetime.datetime) -> dict:
    """FILES plus two trips of an every-day service under way at `moment` (trains 7777 and
    8888) on its service_day, for tests against the running API, which attaches trips at the
    real time."""
    now_s = int((moment - _day_begins(service_day(moment))).total_seconds())
    start, end = max(0, now_s - 3600), now_s + 3600

    def t(seconds):
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    files = dict(FILES)
    files["calendar.txt"] += "everyday,1,1,1,1,1,1,1,20260101,20991231\n"
    files["trips.txt"] += "ic3,everyday,now-7777,7777,Chur,0\nic3,everyday,now-8888,8888,Basel SBB,1\n"
    for trip in ("now-7777", "now-8888"):
        files["stop_times.txt"] += f"{trip},{t(start)},{t(start)},basel,1\n{trip},{t(end)},{t(end)},chur,2\n"
    return files


def write(path, files=None) -> str:
    return Schedule.write_zip(path, files or FILES)
