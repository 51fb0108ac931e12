"""`make bench-scale`: the job's steps at fleet sizes of 10 to 10,000 trains; state and document sizes.

    python -m bench.scale [--smoke] [--output bench/scale.json]

What each fleet's run measures: bench/scale_fleet.py; how they are gathered and shown:
bench/scale_report.py; what the numbers mean: docs/sizing.md.
"""

import argparse
import json
import logging
import os
import sys

from bench import plots, scale_fleet, scale_report

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="Seconds-long: 3 and 10 trains, short runs.")
    parser.add_argument("--output", default=os.path.join(HERE, "scale.json"), help="Where to write the JSON.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    fleets = scale_fleet.SMOKE_FLEETS if args.smoke else scale_fleet.FLEETS
    profiled = scale_fleet.SMOKE_FLEETS[-1]._replace(state_cache_mb=0) if args.smoke else scale_fleet.PROFILED
    results = scale_report.run_all(args, fleets, profiled=profiled)
    print(scale_report.table(results))
    print(f"\n{args.output}; {results['duration_s']:.0f} s in all")
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print(plots.scale_plot(results, plots.png_beside(args.output)))
    return 0 if all(f["counts_exact"] for f in results["fleets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
