"""Fails unless every requirement of an extra of an installed distribution is installed within its
range. `pip check` reads a project's unconditional requirements only (setup.py's install_requires,
empty here), so after `pip install --no-deps '.[EXTRA]'` it cannot see an extra that the lock no
longer satisfies; the images run this after it (api/Dockerfile, templates/Dockerfile).

    python requirements/check_extra.py pipeline [--distribution train-occupancy]

Standard library and `packaging` only (pip's own copy where the image has no other).
"""

import argparse
import importlib.metadata
import sys

try:
    from packaging.requirements import Requirement
except ImportError:  # the API's image: packaging only inside pip
    from pip._vendor.packaging.requirements import Requirement


def problems(distribution: str, extra: str) -> list:
    """What is missing or outside its range, one line each; [] when the extra is satisfied."""
    wanted = [
        r
        for r in map(Requirement, importlib.metadata.requires(distribution) or ())
        if r.marker is not None and r.marker.evaluate({"extra": extra})
    ]
    if not wanted:
        return [f"{distribution} has no requirement for the extra {extra!r}"]
    found = []
    for requirement in wanted:
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{requirement} is not installed")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            found.append(f"{requirement} is not satisfied by {requirement.name} {version}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("extra")
    parser.add_argument("--distribution", default="train-occupancy")
    args = parser.parse_args(argv)
    found = problems(args.distribution, args.extra)
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
