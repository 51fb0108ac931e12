"""What connects the domain (occupancy/) to the services it runs on: Firestore (the store, the
registry's reads and writes, the fleet's views and listeners), BigQuery and Parquet (the TIDES
tables). The domain imports none of these; these import the domain (docs/design.md, "Layout")."""
