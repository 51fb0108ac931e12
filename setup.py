"""Packaging for the train-occupancy system.

Extras keep each installation small:
  .[device]    the door device publisher (Pub/Sub and MQTT clients, no Beam)
  .[registry]  the fleet registry CLI (Firestore client only)
  .[pipeline]  the Beam pipeline (what Dataflow workers install via --setup_file)
  .[launch]    the operator's Flex Template launcher (python -m pipeline.launch)
  .[bridge]    the MQTT-to-Pub/Sub bridge (paho-mqtt and the Pub/Sub client)
  .[api]       the HTTP API, dashboard and GTFS-Realtime feed (FastAPI, no Beam)
  .[test]      everything plus pytest
"""

import setuptools

BEAM_VERSION = "2.77.0"

# Signed messages (occupancy/identity.py): JWS from PyJWT on `cryptography`.
IDENTITY = ["PyJWT[crypto]>=2.8,<3"]
# MQTT (occupancy/mqtt.py): paho-mqtt 2.x, for manual acks; the broker is Debian's mosquitto.
MQTT = ["paho-mqtt>=2.1,<3"]
DEVICE = ["google-cloud-pubsub>=2.18,<3", *IDENTITY, *MQTT]
# GET /metrics of the API and the bridge, for a self-hosted scraper.
METRICS = ["prometheus-client>=0.20,<1"]
# The MQTT-to-Pub/Sub bridge (bridge/): no Beam, no Firestore.
BRIDGE = ["google-cloud-pubsub>=2.18,<3", *IDENTITY, *MQTT, *METRICS]
REGISTRY = ["google-cloud-firestore>=2.16,<3", *IDENTITY]
# What Dataflow workers run (pipeline.main's imports: occupancy, adapters, pipeline, transforms), nothing more.
PIPELINE = [
    f"apache-beam[gcp]=={BEAM_VERSION}",
    "google-cloud-firestore>=2.16,<3",
    # The TIDES tables as Parquet (adapters/tides_parquet.py); Beam brings it too.
    "pyarrow>=14",
    # The TIDES tables in BigQuery (transforms/tides_bigquery_sink.py, adapters/tides_bigquery.py);
    # Beam's gcp extra brings both too.
    "google-cloud-bigquery-storage>=2.20,<3",
    "google-cloud-bigquery>=3,<4",
    # The forecast (occupancy/forecast.py, python -m pipeline.forecast): gradient-boosted trees.
    "scikit-learn>=1.4,<2",
    *IDENTITY,
]
# The operator's launcher (python -m pipeline.launch: launch, drain, cancel, status), not workers.
LAUNCH = ["google-api-python-client>=2.100,<3"]
API = [
    "google-cloud-firestore>=2.16,<3",
    "fastapi>=0.110,<1",
    "uvicorn>=0.29,<1",
    "firebase-admin>=6.5,<8",
    "gtfs-realtime-bindings>=1.0,<4",
    *METRICS,
]
TEST = [
    "pytest>=8,<10",
    "pytest-timeout>=2.2",
    "pytest-xdist>=3.5,<4",
    "httpx>=0.27,<1",
    "hypothesis>=6.100,<7",
    # The API against its own OpenAPI document (tests/test_api_schema.py).
    "schemathesis>=4.3,<5",
    "selenium>=4.20,<5",
    "psutil>=5.9,<8",
    "gtfs-rt-validator>=0.3,<1",
    # SIRI 2.0 bindings (xsdata) reading back the SIRI-ET document (tests/test_siri_et.py).
    "siri>=0.1,<1",
    "ruff>=0.8,<1",
    "matplotlib>=3.8,<4",
    # requirements/*.lock (make lock), and the check that they are current (tests/test_lock.py).
    "uv>=0.5,<1",
]  # the docs' figures (bench/plots.py)

setuptools.setup(
    name="train-occupancy",
    version="0.1.0",
    description="Streaming train occupancy: door sensors -> Pub/Sub -> Beam -> Firestore",
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=[
            "occupancy",
            "occupancy.*",
            "adapters",
            "adapters.*",
            "registry",
            "registry.*",
            "pipeline",
            "pipeline.*",
            "transforms",
            "transforms.*",
            "device",
            "device.*",
            "local",
            "local.*",
            "api",
            "api.*",
            "bridge",
            "bridge.*",
            "sim",
            "sim.*",
        ]
    ),
    package_data={"api": ["static/*"]},
    install_requires=[],
    extras_require={
        "device": DEVICE,
        "registry": REGISTRY,
        "pipeline": PIPELINE,
        "api": API,
        "bridge": BRIDGE,
        "launch": LAUNCH,
        "test": sorted(set(DEVICE + REGISTRY + PIPELINE + LAUNCH + API + BRIDGE + TEST)),
    },
)
