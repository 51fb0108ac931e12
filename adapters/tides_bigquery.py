"""The TIDES tables in BigQuery: their table definitions and their rows as the Storage Write
API takes them, both made from `occupancy.tides.FIELDS` (docs/design.md, "TIDES tables").

* `table_resource(project, dataset, table)`: the table as BigQuery's REST API (tables.insert)
  describes it: the columns with TIDES's types (`REQUIRED` where TIDES requires the field),
  partitioned by day on `service_date`, clustered by the table's key. `python -m
  adapters.tides_bigquery create` makes the tables
  (run again, it makes those missing: `trips_performed` for a dataset made before it).
* `RowEncoder(table)`: the rows as protocol buffers of a message made from the same fields,
  and its descriptor for the stream's writer schema, with BigQuery's encodings of each type
  (a DATE is days since 1970-01-01 in an int32, a TIMESTAMP microseconds since the epoch in
  an int64: "Supported protocol buffer data types", Storage Write API); `batches` cuts
  encoded rows into AppendRows requests.
"""

import datetime
import os
from typing import Dict, Iterable, Iterator, List, Optional, TypeVar

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from occupancy.tides import FIELDS, KEYS, table_label

PARTITION = "service_date"
# The variable naming a local server (host:port) each Storage API client speaks to instead of
# BigQuery, without credentials: the tests' tests/bigquery_*_server.py.
EMULATOR_ENV = {"read": "BIGQUERY_READ_EMULATOR_HOST", "write": "BIGQUERY_WRITE_EMULATOR_HOST"}
_EPOCH_DAY = datetime.date(1970, 1, 1)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# TIDES (Frictionless) type -> BigQuery column type.
COLUMN_TYPES = {
    "string": "STRING",
    "integer": "INT64",
    "number": "FLOAT64",
    "boolean": "BOOL",
    "date": "DATE",
    "datetime": "TIMESTAMP",
}
_F = descriptor_pb2.FieldDescriptorProto
# TIDES type -> the protocol buffer field type BigQuery converts to that column type.
_PROTO_TYPES = {
    "string": _F.TYPE_STRING,
    "integer": _F.TYPE_INT64,
    "number": _F.TYPE_DOUBLE,
    "boolean": _F.TYPE_BOOL,
    "date": _F.TYPE_INT32,
    "datetime": _F.TYPE_INT64,
}
# A request to AppendRows may carry up to 10 MB; rows are sent in requests of at most this.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
T = TypeVar("T")


def storage_client(api: str):
    """A client of the Storage `api`, "read" (BigQueryReadClient) or "write" (BigQueryWriteClient):
    Application Default Credentials, or the server EMULATOR_ENV[api] names, without them."""
    import grpc
    from google.cloud import bigquery_storage_v1
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport
    from google.cloud.bigquery_storage_v1.services.big_query_write.transports import BigQueryWriteGrpcTransport

    client, transport = {
        "read": (bigquery_storage_v1.BigQueryReadClient, BigQueryReadGrpcTransport),
        "write": (bigquery_storage_v1.BigQueryWriteClient, BigQueryWriteGrpcTransport),
    }[api]
    host = os.environ.get(EMULATOR_ENV[api])
    return client(transport=transport(channel=grpc.insecure_channel(host))) if host else client()


def table_resource(project: str, dataset: str, table: str) -> dict:
    """The BigQuery table (REST `Table` resource) of a TIDES table.

    Args:
        project: the Google Cloud project the dataset is in.
        dataset: the BigQuery dataset's id.
        table: the table's name (a key of occupancy.tides.FIELDS), also its BigQuery table id.
    """
    return {
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "description": f"TIDES {table} (https://tides-transit.org), written by the train occupancy job.",
        "schema": {
            "fields": [
                {"name": f.name, "type": COLUMN_TYPES[f.type], "mode": "REQUIRED" if f.required else "NULLABLE"}
                for f in FIELDS[table]
            ]
        },
        "timePartitioning": {"type": "DAY", "field": PARTITION},
        "clustering": {"fields": [k for k in KEYS[table] if k != PARTITION][:4]},
    }


class RowEncoder:
    """A TIDES table's rows as the serialized protocol buffers of one AppendRows request."""

    def __init__(self, table: str):
        self.table = table
        self._fields = FIELDS[table]
        message = descriptor_pb2.DescriptorProto(name=table_label(table))
        for number, f in enumerate(self._fields, start=1):
            # proto2 (a bare DescriptorProto is read as proto2): a field left out is NULL.
            message.field.add(name=f.name, number=number, type=_PROTO_TYPES[f.type], label=_F.LABEL_OPTIONAL)
        self.descriptor = message
        pool = descriptor_pool.DescriptorPool()
        pool.Add(descriptor_pb2.FileDescriptorProto(name=f"tides_{table}.proto", message_type=[message]))
        self._class = message_factory.GetMessageClass(pool.FindMessageTypeByName(message.name))

    def encode(self, row: dict) -> bytes:
        """The row's bytes; raises ValueError for a value its column cannot hold (a wrong type, an
        integer past int64, a time without a time zone)."""
        values = {}
        for f in self._fields:
            value = row.get(f.name)
            if value is not None:
                values[f.name] = _to_wire(f.type, value)
        try:
            return self._class(**values).SerializeToString()
        except (TypeError, ValueError) as e:  # protobuf's own checks of each value
            raise ValueError(str(e)) from None


def batches(encoded: Iterable[T], max_bytes: Optional[int] = None, size=len) -> Iterator[List[T]]:
    """`encoded` in order, in lists of at most `max_bytes` (MAX_REQUEST_BYTES) by `size`, at
    least one item each: the rows of each AppendRows request.

    Args:
        encoded: the items (serialized rows), in the order they are sent.
        max_bytes: the most a list holds by `size` (an item larger than it goes alone); None or 0:
            MAX_REQUEST_BYTES.
        size: an item's size in bytes.

    Yields:
        Lists of consecutive items, none empty.
    """
    max_bytes = max_bytes or MAX_REQUEST_BYTES
    batch: List[T] = []
    total = 0
    for item in encoded:
        n = size(item)
        if batch and total + n > max_bytes:
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch


def _to_wire(kind: str, value):
    if kind == "date":
        if not isinstance(value, datetime.date) or isinstance(value, datetime.datetime):
            raise ValueError(f"a DATE needs a date: {value!r}")
        return (value - _EPOCH_DAY).days
    if kind == "datetime":
        if not isinstance(value, datetime.datetime) or value.tzinfo is None:
            raise ValueError(f"a TIMESTAMP needs a time with a time zone: {value!r}")
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return value


def table_resources(project: str, dataset: str) -> Dict[str, dict]:
    return {table: table_resource(project, dataset, table) for table in sorted(FIELDS)}


def create_tables(client, project: str, dataset: str) -> List[str]:
    """Creates the dataset's TIDES tables that do not exist yet (google.cloud.bigquery.Client);
    returns the tables created.

    Args:
        client: a google.cloud.bigquery.Client.
        project: the Google Cloud project the dataset is in.
        dataset: the dataset's id; it must exist.

    Returns:
        The names of the tables created, sorted; a table that exists is left as it is.
    """
    from google.api_core import exceptions as gexc
    from google.cloud import bigquery

    created = []
    for table, resource in table_resources(project, dataset).items():
        try:
            client.create_table(bigquery.Table.from_api_repr(resource))
            created.append(table)
        except gexc.Conflict:
            pass  # it exists: its schema is BigQuery's to keep (a column added later is added by hand)
    return created


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m adapters.tides_bigquery", description="The TIDES tables in BigQuery."
    )
    parser.add_argument("command", choices=("schema", "create"), help="schema: print the tables; create: make them.")
    parser.add_argument("--dataset", required=True, help="PROJECT.DATASET the tables are in (it must exist).")
    args = parser.parse_args(argv)
    project, _, dataset = args.dataset.partition(".")
    if not project or not dataset:
        parser.error("--dataset must be PROJECT.DATASET")
    if args.command == "schema":
        json.dump(table_resources(project, dataset), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from google.cloud import bigquery

    created = create_tables(bigquery.Client(project=project), project, dataset)
    print(f"created {', '.join(created) or 'nothing (the tables exist)'} in {project}.{dataset}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
