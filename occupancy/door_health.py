"""Door health from balanced trips: which door counts out of line with its train's others.

Input: a train's `trips` documents (written at each terminus, occupancy.documents.trip_write),
each with what every door counted in that trip. Two rules, per door, over the train's
last `window` trips:

* silent: the door counted nobody in the last `silent_trips` trips while its train
  moved at least `min_moved` people per door in each of them (a dead counter);
* biased: riders use a door to board and to alight alike over many trips, so each
  door's ins / outs ratio should match its train's. With B ins and A outs over the
  window, l = ln((B + 0.5) / (A + 0.5)). Its spread has two sources: counting noise
  (se = sqrt(1 / (B + 0.5) + 1 / (A + 0.5)) if every crossing were reported on its
  own) and more, because devices report net counts per message, which hide
  crossings in both directions; so the scale is the larger of se and the spread of
  the train's doors (1.4826 x the median absolute deviation of their l). A door is
  biased when |l - median l| / scale >= z_threshold (default 4) and the bias
  estimate exp(l - median) - 1 is at least `min_bias` (5 %) either way.

A door without enough crossings (fewer than `min_crossings` over the window) is
`insufficient_data`. Statistics, not magic: a ±10 % bias needs about 3,000
crossings through the door to stand out at z = 4 (see docs/accuracy.md).
"""

import math
import statistics
from typing import Dict, List, NamedTuple, Sequence

OK, BIASED, SILENT, INSUFFICIENT = "ok", "biased", "silent", "insufficient_data"


class Rule(NamedTuple):
    window: int = 200  # trips looked at (the newest)
    z_threshold: float = 4.0
    min_crossings: int = 100
    silent_trips: int = 1
    min_moved: int = 5  # people per door per trip for "silent" to mean anything
    min_bias: float = 0.05
    persistent: int = 3  # biased in this many consecutive assessments (one per trip)


class DoorHealth(NamedTuple):
    device_id: str
    status: str
    bias_estimate: float  # relative, ins vs outs against the train's median door
    z: float
    boarded: int
    alighted: int
    trips: int

    def as_document(self) -> dict:
        return {
            "status": self.status,
            "bias_estimate": round(self.bias_estimate, 4),
            "z": round(self.z, 2),
            "boarded": self.boarded,
            "alighted": self.alighted,
            "trips": self.trips,
        }


def _log_ratio(boarded: int, alighted: int):
    return (math.log((boarded + 0.5) / (alighted + 0.5)), math.sqrt(1 / (boarded + 0.5) + 1 / (alighted + 0.5)))


def assess(trips: Sequence[dict], devices: Sequence[str], rule: Rule = Rule()) -> Dict[str, DoorHealth]:
    """Health of each of a train's `devices` from its trips (oldest first, as stored).

    `biased` must hold in the assessments after each of the last `rule.persistent`
    trips: one unlucky trip does not flag a door.
    """
    trips = list(trips)
    now = _assess_once(trips, devices, rule)
    for back in range(1, rule.persistent):
        if len(trips) - back < 1:
            break
        earlier = _assess_once(trips[:-back], devices, rule)
        for device, health in now.items():
            if health.status == BIASED and earlier[device].status != BIASED:
                now[device] = health._replace(status=OK)
    return now


def _assess_once(trips: Sequence[dict], devices: Sequence[str], rule: Rule) -> Dict[str, DoorHealth]:
    recent = list(trips)[-rule.window :]
    sums = {d: [0, 0] for d in devices}
    for trip in recent:
        for device, counts in (trip.get("doors") or {}).items():
            if device in sums:
                sums[device][0] += int(counts.get("boarded") or 0)
                sums[device][1] += int(counts.get("alighted") or 0)
    ratios = {d: _log_ratio(b, a) for d, (b, a) in sums.items() if b + a >= rule.min_crossings}
    median = statistics.median(ln for ln, _ in ratios.values()) if len(ratios) >= 3 else None
    spread = 1.4826 * statistics.median(abs(ln - median) for ln, _ in ratios.values()) if median is not None else 0.0
    silent = set()
    last = recent[-rule.silent_trips :] if len(recent) >= rule.silent_trips else []
    if last and all(
        int(t.get("ons") or 0) + int(t.get("offs") or 0) >= rule.min_moved * 2 * len(devices) for t in last
    ):
        silent = {
            d
            for d in devices
            if all(
                not ((t.get("doors") or {}).get(d) or {}).get("boarded")
                and not ((t.get("doors") or {}).get(d) or {}).get("alighted")
                for t in last
            )
        }
    out = {}
    for device in devices:
        boarded, alighted = sums[device]
        status, bias, z = INSUFFICIENT, 0.0, 0.0
        if device in silent:
            status = SILENT
        elif device in ratios and median is not None:
            ln, se = ratios[device]
            z = (ln - median) / max(se, spread)
            bias = math.exp(ln - median) - 1
            status = BIASED if abs(z) >= rule.z_threshold and abs(bias) >= rule.min_bias else OK
        out[device] = DoorHealth(device, status, bias, z, boarded, alighted, len(recent))
    return out


def flagged(health: Dict[str, DoorHealth]) -> List[str]:
    return sorted(d for d, h in health.items() if h.status in (BIASED, SILENT))
