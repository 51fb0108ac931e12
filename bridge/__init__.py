"""The MQTT-to-Pub/Sub bridge: devices that speak MQTT, as they did to IoT Core
(`python -m bridge --help`; docs/design.md, "Devices over MQTT")."""
