"""Packaging for the train-occupancy system.

Extras keep each installation small:
  .[device]    the door device publisher (Pub/Sub client only, no Beam)
  .[registry]  the fleet registry CLI (Firestore client only)
  .[pipeline]  the Beam pipeline (what Dataflow workers install via --setup_file)
  .[test]      everything plus pytest
"""
import setuptools

BEAM_VERSION = "2.77.0"

DEVICE = ["google-cloud-pubsub>=2.18,<3"]
REGISTRY = ["google-cloud-firestore>=2.16,<3"]
PIPELINE = [
    f"apache-beam[gcp]=={BEAM_VERSION}",
    "google-cloud-firestore>=2.16,<3",
    "google-api-python-client>=2.100,<3",
]

setuptools.setup(
    name="train-occupancy",
    version="0.1.0",
    description="Streaming train occupancy: door sensors -> Pub/Sub -> Beam -> Firestore",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["occupancy", "occupancy.*", "pipeline", "pipeline.*",
                                               "transforms", "transforms.*", "device", "device.*",
                                               "local", "local.*"]),
    install_requires=[],
    extras_require={
        "device": DEVICE,
        "registry": REGISTRY,
        "pipeline": PIPELINE,
        "test": sorted(set(DEVICE + REGISTRY + PIPELINE + ["pytest>=8,<10", "pytest-timeout>=2.2"])),
    },
)
