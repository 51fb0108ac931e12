"""python -m pipeline.template_metadata OVERLAY: another Flex Template's metadata, made from
templates/metadata.json (the streaming job's) and an overlay, so that the parameters both
templates share are written once.

The overlay (templates/replay.json, the batch replay's; templates/forecast.json, the forecast
job's) gives the new template's `name`, `description` and `streaming`, the base's parameters
it has `without` (or `only` those it keeps), and its own `parameters`, which come first (one
may replace a base parameter the overlay does not keep). `make template` writes the result to
.local/ and builds a spec from it with the same image.
"""

import argparse
import json
import sys
from typing import List, Optional

# Fields of the streaming job's metadata that describe its streaming modes: a batch template has none.
STREAMING_MODES = ("supportsAtLeastOnce", "supportsExactlyOnce", "defaultStreamingMode")


class OverlayError(ValueError):
    """An overlay that names a parameter the base does not have, or adds one the base keeps."""


def derive(base: dict, overlay: dict) -> dict:
    """The metadata `overlay` describes, on the parameters of `base`."""
    names = [p["name"] for p in base["parameters"]]
    if "without" in overlay and "only" in overlay:
        raise OverlayError("the overlay names both the parameters it has without and the only ones it keeps")
    without = set(overlay.get("without", ()))
    if "only" in overlay:
        missing = sorted(set(overlay["only"]) - set(names))
        if missing:
            raise OverlayError(f"the overlay keeps parameters the base does not have: {missing}")
        without = set(names) - set(overlay["only"])
    missing = sorted(without - set(names))
    if missing:
        raise OverlayError(f"the overlay removes parameters the base does not have: {missing}")
    added = overlay.get("parameters", [])
    clash = sorted({p["name"] for p in added} & (set(names) - without))
    if clash:
        raise OverlayError(f"the overlay adds parameters the base already has: {clash}")
    kept = [p for p in base["parameters"] if p["name"] not in without]
    result = {key: value for key, value in base.items() if key != "parameters" and key not in STREAMING_MODES}
    for key in ("name", "description", "streaming"):
        if key in overlay:
            result[key] = overlay[key]
    if result.get("streaming"):
        result.update({key: base[key] for key in STREAMING_MODES if key in base})
    result["parameters"] = [*added, *kept]
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.template_metadata", description=__doc__.split("\n\n")[0])
    parser.add_argument("overlay", help="The overlay file, e.g. templates/replay.json.")
    parser.add_argument("--base", default="templates/metadata.json", help="The streaming job's metadata.")
    args = parser.parse_args(argv)
    with open(args.base) as f:
        base = json.load(f)
    with open(args.overlay) as f:
        overlay = json.load(f)
    try:
        metadata = derive(base, overlay)
    except OverlayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    json.dump(metadata, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
