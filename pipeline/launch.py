"""python -m pipeline.launch: the job on Dataflow through the Dataflow v1b3 API.

    launch   start the Flex Template job (or --update the running one, with
             --transform_name_mapping OLD=NEW for renamed steps; --batch for the
             replay's template)
    drain    stop reading, finish what is in flight, then stop (no data lost)
    cancel   stop now (in-flight data is dropped)
    status   the job's state, workers and this pipeline's counters (jobs.getMetrics)
    complete-spec  add the template metadata fields gcloud drops to a spec (used by
             `make template`; reads the spec on stdin, writes it on stdout)

Uses the discovery-based client of google-api-python-client with Application
Default Credentials. API errors (404 job, 409 rejected update, 403 permission)
become one line on stderr and exit 1; a usage error exits 2.
"""

import argparse
import json
import logging
import sys
from typing import Dict, List, Optional, Sequence

_LOGGER = logging.getLogger(__name__)

ACTIVE = "ACTIVE"
DRAINED, CANCELLED = "JOB_STATE_DRAINED", "JOB_STATE_CANCELLED"
COUNTER_NAMESPACE = "occupancy"  # transforms' beam.metrics namespace
# TemplateMetadata fields Dataflow defines that gcloud (528) leaves out of a built spec.
STREAMING_FIELDS = ("streaming", "supportsAtLeastOnce", "supportsExactlyOnce", "defaultStreamingMode")


class LaunchError(Exception):
    """An API error or an impossible request, with a message for the operator."""


def build_client():
    """The Dataflow v1b3 client with Application Default Credentials."""
    from googleapiclient import discovery

    return discovery.build("dataflow", "v1b3", cache_discovery=False)


def _key_values(pairs: Sequence[str], what: str) -> Dict[str, str]:
    result = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LaunchError(f"{what} must be KEY=VALUE, got {pair!r}")
        result[key] = value
    return result


class Launcher:
    """Job operations for one project and region, on a Dataflow v1b3 client."""

    def __init__(self, client, project: str, region: str):
        self.client, self.project, self.region = client, project, region
        self._jobs = client.projects().locations().jobs()

    def _call(self, request, what: str):
        from googleapiclient.errors import HttpError

        try:
            return request.execute(num_retries=3)
        except HttpError as e:
            status = getattr(e.resp, "status", None)
            reason = _reason(e)
            hint = {404: "not found", 403: "permission denied", 409: "rejected (conflict)", 400: "invalid request"}.get(
                int(status or 0), f"HTTP {status}"
            )
            raise LaunchError(f"{what}: {hint}: {reason}") from None

    def launch(
        self,
        job_name: str,
        spec_path: str,
        parameters: Dict[str, str],
        environment: Dict[str, object],
        update: bool = False,
        mappings: Optional[Dict[str, str]] = None,
        validate_only: bool = False,
    ) -> dict:
        if mappings and not update:
            raise LaunchError("transform name mappings only apply to --update")
        launch_parameter = {
            "jobName": job_name,
            "containerSpecGcsPath": spec_path,
            "parameters": dict(parameters),
            "environment": dict(environment),
        }
        if update:
            launch_parameter["update"] = True
        if mappings:
            launch_parameter["transformNameMappings"] = dict(mappings)
        body = {"launchParameter": launch_parameter, "validateOnly": validate_only}
        request = (
            self.client.projects()
            .locations()
            .flexTemplates()
            .launch(projectId=self.project, location=self.region, body=body)
        )
        verb = "update" if update else "launch"
        response = self._call(request, f"{verb} of job {job_name}")
        return response.get("job") or {}

    def find_active(self, job_name: str) -> dict:
        """The active job named `job_name` (the newest if several)."""
        request = self._jobs.list(projectId=self.project, location=self.region, filter=ACTIVE, name=job_name)
        jobs = [
            j
            for j in self._call(request, f"listing jobs named {job_name}").get("jobs", [])
            if j.get("name") == job_name
        ]
        if not jobs:
            raise LaunchError(f"no active job named {job_name} in {self.project}/{self.region}")
        return max(jobs, key=lambda j: j.get("createTime", ""))

    def set_state(self, job_id: str, state: str) -> dict:
        request = self._jobs.update(
            projectId=self.project, location=self.region, jobId=job_id, body={"requestedState": state}
        )
        what = {DRAINED: "drain", CANCELLED: "cancel"}[state]
        return self._call(request, f"{what} of job {job_id}")

    def status(self, job_id: str) -> dict:
        job = self._call(
            self._jobs.get(projectId=self.project, location=self.region, jobId=job_id, view="JOB_VIEW_SUMMARY"),
            f"job {job_id}",
        )
        metrics = self._call(
            self._jobs.getMetrics(projectId=self.project, location=self.region, jobId=job_id),
            f"metrics of job {job_id}",
        )
        return {
            "id": job.get("id"),
            "name": job.get("name"),
            "state": job.get("currentState"),
            "state_time": job.get("currentStateTime"),
            "type": job.get("type"),
            "workers": _workers(job, metrics),
            "counters": counters(metrics),
        }


def _reason(error) -> str:
    try:
        return json.loads(error.content.decode("utf-8"))["error"]["message"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return str(getattr(error, "reason", "") or error)


def counters(metrics: dict) -> Dict[str, int]:
    """This pipeline's Beam counters (namespace `occupancy`), summed over steps, by name."""
    totals: Dict[str, int] = {}
    for update in metrics.get("metrics", []):
        name = update.get("name", {})
        context = name.get("context", {})
        if name.get("origin") != "user" or context.get("namespace") != COUNTER_NAMESPACE:
            continue
        if context.get("tentative") == "true":  # committed values only
            continue
        value = update.get("scalar")
        if isinstance(value, (int, float)):
            totals[name.get("name")] = totals.get(name.get("name"), 0) + int(value)
    return dict(sorted(totals.items()))


def _workers(job: dict, metrics: dict) -> Optional[int]:
    """Current workers: Dataflow's own CurrentNumWorkers metric, else the pool's configured size."""
    for update in metrics.get("metrics", []):
        name = update.get("name", {})
        if name.get("origin") == "dataflow/v1b3" and name.get("name") == "CurrentNumWorkers":
            return int(update.get("scalar", 0))
    pools = (job.get("environment") or {}).get("workerPools") or []
    return sum(int(p.get("numWorkers", 0)) for p in pools) if pools else None


def complete_spec(spec: dict, metadata: dict) -> dict:
    """The spec with the template metadata's streaming fields put back."""
    result = json.loads(json.dumps(spec))
    for field in STREAMING_FIELDS:
        if field in metadata:
            result.setdefault("metadata", {})[field] = metadata[field]
    return result


# ---- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.launch",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, help_text, job=True):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if job:
            sub.add_argument("--project", required=True, help="Google Cloud project id.")
            sub.add_argument("--region", required=True, help="Dataflow region, e.g. europe-west1.")
            sub.add_argument("--job_name", default="occupancy", help="The job's name (default: occupancy).")
        return sub

    launch = command("launch", "Start the Flex Template job, or replace the running one (--update).")
    launch.add_argument("--template", required=True, help="gs:// path of the template spec (make template).")
    launch.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A template parameter (templates/metadata.json); repeat for more.",
    )
    launch.add_argument("--service_account", default=None, help="Service account the workers run as.")
    launch.add_argument("--staging_location", default=None, help="gs:// staging location.")
    launch.add_argument("--temp_location", default=None, help="gs:// temp location.")
    launch.add_argument("--max_workers", type=int, default=None, help="Autoscaling ceiling.")
    launch.add_argument("--update", action="store_true", help="Replace the running job of this name in place.")
    launch.add_argument(
        "--batch", action="store_true", help="A batch template (the replay's): no Streaming Engine, no --update."
    )
    launch.add_argument(
        "--transform_name_mapping",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="With --update: a step renamed since the running job; repeat for more.",
    )
    launch.add_argument("--validate_only", action="store_true", help="Ask Dataflow to check, not start.")
    for name, help_text in (
        ("drain", "Drain the active job: no new input, in-flight data is written."),
        ("cancel", "Cancel the active job now (in-flight data is dropped)."),
        ("status", "State, workers and this pipeline's counters of the active job."),
    ):
        sub = command(name, help_text)
        sub.add_argument("--job_id", default=None, help="A job id instead of looking up --job_name.")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="Print JSON.")
    spec = command("complete-spec", "Add the streaming metadata gcloud drops (stdin -> stdout).", job=False)
    spec.add_argument("--metadata", default="templates/metadata.json", help="The template metadata file.")
    return parser


def run(args, client=None, out=sys.stdout) -> int:
    if args.command == "complete-spec":
        with open(args.metadata) as f:
            metadata = json.load(f)
        spec = json.loads(sys.stdin.read().lstrip("|-\n"))  # gcloud --print-only prints YAML-ish "|-"
        json.dump(complete_spec(spec, metadata), out, indent=2)
        out.write("\n")
        return 0
    launcher = Launcher(client or build_client(), args.project, args.region)
    if args.command == "launch":
        if args.batch and args.update:
            raise LaunchError("a batch job is not updated in place: launch it again")
        environment = {} if args.batch else {"enableStreamingEngine": True}
        for key, value in (
            ("serviceAccountEmail", args.service_account),
            ("stagingLocation", args.staging_location),
            ("tempLocation", args.temp_location),
            ("maxWorkers", args.max_workers),
        ):
            if value is not None:
                environment[key] = value
        job = launcher.launch(
            args.job_name,
            args.template,
            _key_values(args.parameter, "--parameter"),
            environment,
            args.update,
            _key_values(args.transform_name_mapping, "--transform_name_mapping"),
            args.validate_only,
        )
        print(
            f"{'updated' if args.update else 'launched'} {args.job_name}: job {job.get('id', '(validated)')}", file=out
        )
        return 0
    job_id = args.job_id or launcher.find_active(args.job_name)["id"]
    if args.command in ("drain", "cancel"):
        launcher.set_state(job_id, DRAINED if args.command == "drain" else CANCELLED)
        print(f"{args.command} requested for job {job_id}", file=out)
        return 0
    status = launcher.status(job_id)
    if args.json:
        json.dump(status, out, indent=2)
        out.write("\n")
    else:
        print(
            f"job {status['id']} ({status['name']}): {status['state']} since {status['state_time']}, "
            f"workers {status['workers'] if status['workers'] is not None else '?'}",
            file=out,
        )
        for name, value in status["counters"].items():
            print(f"  {name:32} {value:>12,}", file=out)
    return 0


def main(argv: Optional[List[str]] = None, client=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return run(args, client)
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except DefaultCredentialsError:
        print(
            "error: no Application Default Credentials: run 'gcloud auth application-default login' "
            "(or run where a service account is attached)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
