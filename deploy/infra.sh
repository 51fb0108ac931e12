#!/usr/bin/env bash
# Creates what the occupancy pipeline needs in a Google Cloud project, with
# least-privilege service accounts, and deploys the Firestore indexes.
#
#   deploy/infra.sh --project PROJECT --region REGION --bucket BUCKET [--dry-run]
#   make deploy-infra PROJECT=... REGION=... BUCKET=...     (DRY_RUN=1 adds --dry-run)
#
# --dry-run prints every gcloud command it would run, one per line on stdout,
# and runs nothing (no account or network needed).
#
# Idempotent: a resource that already exists is kept as it is; IAM bindings are
# (re-)added. Prerequisites (README, "Deploy to Dataflow"): the APIs enabled
# and the Firestore database created in native mode.
#
# What it creates (names are the defaults; see --help):
#   gs://BUCKET                       staging, temp and template specs
#   Artifact Registry repo occupancy  the template / worker image
#   topic occupancy-events            devices publish here
#   subscription occupancy-pipeline   the pipeline reads here
#   topic occupancy-dead-letters      rejected messages (+ a subscription of the
#                                     same name that keeps them 7 days: a topic
#                                     without a subscription drops what it gets)
#   service account occupancy-pipeline  Dataflow launcher and workers:
#       roles/pubsub.subscriber + roles/pubsub.viewer on the subscription only,
#       roles/pubsub.publisher on the dead-letter topic only,
#       roles/datastore.user and roles/dataflow.worker on the project,
#       roles/storage.objectAdmin on the bucket only,
#       roles/artifactregistry.reader on the repository only
#   service account occupancy-device  a door device: roles/pubsub.publisher on
#                                     the events topic, nothing else
#   service account occupancy-api     the API on Cloud Run (make api-deploy):
#                                     roles/datastore.user, roles/firebaseauth.viewer
#                                     and roles/monitoring.metricWriter (its metrics
#                                     collector) on the project, nothing else
#   Firestore indexes from deploy/firestore.indexes.json (composite indexes and
#   single-field exemptions), with `gcloud firestore indexes ...`
#   Cloud Monitoring alert policies (deploy/monitoring/policies/*.json, each
#   with its runbook section in docs/runbook.md) and the dashboard
#   "Train occupancy" (deploy/monitoring/dashboard.json); a policy or dashboard
#   whose display name exists is kept as it is; the service "occupancy" with
#   its SLOs (deploy/monitoring/slos/: count freshness, feed availability).
#   --notification-channel CHANNEL
#   (a channel's full name; repeatable) is attached to every policy created.
#   With --api-domain DOMAIN, the API's edge: a global external HTTPS load
#   balancer for DOMAIN (Google-managed certificate, a static address) in front
#   of the Cloud Run service, with the Cloud Armor policy occupancy-api-edge:
#   at most --api-rate-limit requests a minute (600) from one client address,
#   the rest answered 429. Deploy the API with API_INGRESS=internal-and-cloud-load-balancing
#   (make api-deploy) so that nobody reaches it around the limit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PROJECT="${PROJECT:-}"
REGION="${REGION:-}"
BUCKET="${BUCKET:-}"
TOPIC="occupancy-events"
SUBSCRIPTION="occupancy-pipeline"
DEAD_LETTER_TOPIC="occupancy-dead-letters"
REPOSITORY="occupancy"
PIPELINE_SA_NAME="occupancy-pipeline"
DEVICE_SA_NAME="occupancy-device"
API_SA_NAME="occupancy-api"
DATABASE="(default)"
INDEXES="$HERE/firestore.indexes.json"
API_SERVICE="occupancy-api"
API_DOMAIN=""
API_RATE_LIMIT=600
MONITORING="$HERE/monitoring"
NOTIFICATION_CHANNELS=""
DRY_RUN=0

usage() {
  cat <<EOF
usage: $0 --project PROJECT --region REGION --bucket BUCKET [--dry-run]
          [--topic $TOPIC] [--subscription $SUBSCRIPTION]
          [--dead-letter-topic $DEAD_LETTER_TOPIC] [--repository $REPOSITORY]
          [--pipeline-sa $PIPELINE_SA_NAME] [--device-sa $DEVICE_SA_NAME]
          [--api-sa $API_SA_NAME]
          [--database '$DATABASE'] [--indexes deploy/firestore.indexes.json]
          [--api-domain DOMAIN [--api-service $API_SERVICE] [--api-rate-limit $API_RATE_LIMIT]]
          [--notification-channel projects/PROJECT/notificationChannels/ID ...]
PROJECT, REGION and BUCKET may also come from the environment.
EOF
}

die() { printf 'infra.sh: %s\n' "$*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --project) PROJECT="${2:?}"; shift 2 ;;
    --region) REGION="${2:?}"; shift 2 ;;
    --bucket) BUCKET="${2:?}"; shift 2 ;;
    --topic) TOPIC="${2:?}"; shift 2 ;;
    --subscription) SUBSCRIPTION="${2:?}"; shift 2 ;;
    --dead-letter-topic) DEAD_LETTER_TOPIC="${2:?}"; shift 2 ;;
    --repository) REPOSITORY="${2:?}"; shift 2 ;;
    --pipeline-sa) PIPELINE_SA_NAME="${2:?}"; shift 2 ;;
    --device-sa) DEVICE_SA_NAME="${2:?}"; shift 2 ;;
    --api-sa) API_SA_NAME="${2:?}"; shift 2 ;;
    --database) DATABASE="${2:?}"; shift 2 ;;
    --indexes) INDEXES="${2:?}"; shift 2 ;;
    --api-domain) API_DOMAIN="${2:?}"; shift 2 ;;
    --api-service) API_SERVICE="${2:?}"; shift 2 ;;
    --api-rate-limit) API_RATE_LIMIT="${2:?}"; shift 2 ;;
    --notification-channel) NOTIFICATION_CHANNELS="${NOTIFICATION_CHANNELS:+$NOTIFICATION_CHANNELS,}${2:?}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

BUCKET="${BUCKET#gs://}"
BUCKET="${BUCKET%/}"
[[ -n "$PROJECT" ]] || { usage >&2; die "--project (or PROJECT) is required"; }
[[ -n "$REGION" ]] || { usage >&2; die "--region (or REGION) is required"; }
[[ -n "$BUCKET" ]] || { usage >&2; die "--bucket (or BUCKET) is required"; }
[[ "$PROJECT" =~ ^([a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$ ]] || die "not a project id: $PROJECT"
[[ "$REGION" =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || die "not a region: $REGION"
[[ "$BUCKET" =~ ^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$ ]] || die "not a bucket name: $BUCKET"
[[ -f "$INDEXES" ]] || die "no index file: $INDEXES"
[[ -z "$API_DOMAIN" || "$API_DOMAIN" =~ ^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$ ]] \
  || die "not a domain name: $API_DOMAIN"
[[ "$API_SERVICE" =~ ^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$ ]] || die "not a Cloud Run service name: $API_SERVICE"
[[ "$API_RATE_LIMIT" =~ ^[1-9][0-9]{0,6}$ ]] || die "not a number of requests a minute: $API_RATE_LIMIT"
[[ -z "$NOTIFICATION_CHANNELS" || "$NOTIFICATION_CHANNELS" =~ ^(projects/[-a-z0-9.:]+/notificationChannels/[0-9]+,?)+$ ]] \
  || die "not notification channel names: $NOTIFICATION_CHANNELS"

PIPELINE_SA="${PIPELINE_SA_NAME}@${PROJECT}.iam.gserviceaccount.com"
DEVICE_SA="${DEVICE_SA_NAME}@${PROJECT}.iam.gserviceaccount.com"
API_SA="${API_SA_NAME}@${PROJECT}.iam.gserviceaccount.com"

# A command as one shell-quoted line.
show() {
  local quoted=() arg
  for arg in "$@"; do quoted+=("$(printf '%q' "$arg")"); done
  printf '%s\n' "${quoted[*]}"
}

# Runs a command (dry run: prints it). IAM bindings right after a service
# account was created can fail until it has propagated: retried a few times.
run() {
  if [[ $DRY_RUN == 1 ]]; then show "$@"; return 0; fi
  printf '+ %s\n' "$(show "$@")" >&2
  local attempt
  for attempt in 1 2 3 4 5; do
    if "$@" >/dev/null; then return 0; fi
    [[ $attempt == 5 ]] && return 1
    printf 'retrying in 10 s...\n' >&2
    sleep 10
  done
}

# Runs a create command; "already exists" counts as success (the resource is kept).
create() {
  if [[ $DRY_RUN == 1 ]]; then show "$@"; return 0; fi
  printf '+ %s\n' "$(show "$@")" >&2
  local err
  if err="$("$@" 2>&1 >/dev/null)"; then return 0; fi
  if grep -qiE 'already exists|ALREADY_EXISTS' <<<"$err"; then
    printf '  (already exists, kept)\n' >&2
    return 0
  fi
  printf '%s\n' "$err" >&2
  return 1
}

P="--project=$PROJECT"
PIPELINE_MEMBER="--member=serviceAccount:$PIPELINE_SA"
DEVICE_MEMBER="--member=serviceAccount:$DEVICE_SA"
API_MEMBER="--member=serviceAccount:$API_SA"

# --- storage and image repository ------------------------------------------
create gcloud storage buckets create "gs://$BUCKET" "$P" "--location=$REGION" --uniform-bucket-level-access
create gcloud artifacts repositories create "$REPOSITORY" "$P" "--location=$REGION" --repository-format=docker \
  "--description=Train occupancy Flex Template and worker image"

# --- Pub/Sub ----------------------------------------------------------------
create gcloud pubsub topics create "$TOPIC" "$P"
create gcloud pubsub topics create "$DEAD_LETTER_TOPIC" "$P"
# Dataflow acknowledges a message once it is durably in the pipeline; 7 days of
# retention let a stopped job catch up. No Pub/Sub dead-letter policy and no
# exactly-once delivery here: Dataflow de-duplicates itself (id_label=event_id).
create gcloud pubsub subscriptions create "$SUBSCRIPTION" "$P" "--topic=$TOPIC" \
  --ack-deadline=60 --message-retention-duration=7d --expiration-period=never
create gcloud pubsub subscriptions create "$DEAD_LETTER_TOPIC" "$P" "--topic=$DEAD_LETTER_TOPIC" \
  --message-retention-duration=7d --expiration-period=never

# --- service accounts ---------------------------------------------------------
create gcloud iam service-accounts create "$PIPELINE_SA_NAME" "$P" \
  "--display-name=Train occupancy pipeline (Dataflow launcher and workers)"
create gcloud iam service-accounts create "$DEVICE_SA_NAME" "$P" \
  "--display-name=Train occupancy door device (publishes events)"
create gcloud iam service-accounts create "$API_SA_NAME" "$P" \
  "--display-name=Train occupancy API (Cloud Run)"

# --- least-privilege bindings: pipeline ----------------------------------------
run gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" "$P" "$PIPELINE_MEMBER" --role=roles/pubsub.subscriber
# Read-only on the same subscription: Dataflow reads its configuration.
run gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" "$P" "$PIPELINE_MEMBER" --role=roles/pubsub.viewer
run gcloud pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" "$P" "$PIPELINE_MEMBER" --role=roles/pubsub.publisher
run gcloud projects add-iam-policy-binding "$PROJECT" "$PIPELINE_MEMBER" --role=roles/datastore.user --condition=None
run gcloud projects add-iam-policy-binding "$PROJECT" "$PIPELINE_MEMBER" --role=roles/dataflow.worker --condition=None
run gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" "$PIPELINE_MEMBER" --role=roles/storage.objectAdmin
run gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY" "$P" "--location=$REGION" "$PIPELINE_MEMBER" \
  --role=roles/artifactregistry.reader

# --- least-privilege bindings: devices -----------------------------------------
run gcloud pubsub topics add-iam-policy-binding "$TOPIC" "$P" "$DEVICE_MEMBER" --role=roles/pubsub.publisher

# --- least-privilege bindings: API -----------------------------------------------
# Reads occupancy and writes the registry (Firestore only). Firestore has no
# per-collection IAM: the split between what it may read and write is the
# API's code, and clients outside it are held by deploy/firestore.rules.
run gcloud projects add-iam-policy-binding "$PROJECT" "$API_MEMBER" --role=roles/datastore.user --condition=None
# Reads Firebase Auth users (firebaseauth.users.get): every operator request asks for the
# user as it is now, so that a removed operator is shut out at once (api/auth.py).
run gcloud projects add-iam-policy-binding "$PROJECT" "$API_MEMBER" --role=roles/firebaseauth.viewer --condition=None
# Writes the API's own metrics: the Managed Service for Prometheus collector beside it on Cloud
# Run (make api-deploy) runs as the service's account and sends what it scrapes from /metrics.
run gcloud projects add-iam-policy-binding "$PROJECT" "$API_MEMBER" --role=roles/monitoring.metricWriter --condition=None

# --- Firestore indexes (deploy/firestore.indexes.json, Firebase CLI format) -------
# Translated to gcloud commands so that no Firebase CLI is needed; the same
# file also works with `firebase deploy --only firestore:indexes`.
index_commands() {
  python3 - "$INDEXES" "$PROJECT" "$DATABASE" <<'PY'
import json
import sys

path, project, database = sys.argv[1:]
spec = json.load(open(path))
SEP = "\x1f"
for index in spec.get("indexes", []):
    args = ["gcloud", "firestore", "indexes", "composite", "create", f"--project={project}",
            f"--database={database}", f"--collection-group={index['collectionGroup']}",
            f"--query-scope={index.get('queryScope', 'COLLECTION').lower().replace('_', '-')}"]
    for field in index["fields"]:
        kind = (f"order={field['order'].lower()}" if "order" in field
                else f"array-config={field['arrayConfig'].lower()}")
        args.append(f"--field-config=field-path={field['fieldPath']},{kind}")
    print("create" + SEP + SEP.join(args + ["--async"]))
for override in spec.get("fieldOverrides", []):
    args = ["gcloud", "firestore", "indexes", "fields", "update", override["fieldPath"],
            f"--project={project}", f"--database={database}",
            f"--collection-group={override['collectionGroup']}"]
    if not override.get("indexes"):
        args.append("--disable-indexes")
    for index in override["indexes"]:
        args.append(f"--index=order={index['order']}" if "order" in index
                    else f"--index=array-config={index['arrayConfig'].lower()}")
    print("run" + SEP + SEP.join(args + ["--async"]))
PY
}

commands="$(index_commands)"
while IFS=$'\x1f' read -r -a command; do
  [[ ${#command[@]} -gt 0 ]] || continue
  "${command[0]}" "${command[@]:1}"
done <<<"$commands"

# --- monitoring: alert policies and the dashboard (deploy/monitoring/, docs/runbook.md) ---
# Kept as they are when one of the same display name exists (change one: gcloud alpha
# monitoring policies update NAME --policy-from-file=FILE, or delete it and run this again).
display_name() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["displayName"])' "$1"; }
exists() {  # exists policies|dashboards DISPLAY_NAME; a failed listing stops the script
  local list=(gcloud monitoring dashboards list) found
  [[ $1 == policies ]] && list=(gcloud alpha monitoring policies list)
  found="$("${list[@]}" "$P" "--filter=displayName=\"$2\"" "--format=value(name)")" \
    || die "cannot list the $1 (is the Monitoring API enabled?)"
  [[ -n "$found" ]]
}
# The service "occupancy" and its SLOs (deploy/monitoring/slos/, the id is the file's name):
# gcloud has no command for them, so the Monitoring API itself. An existing one (HTTP 409) is kept.
MONITORING_API="https://monitoring.googleapis.com/v3/projects/$PROJECT/services"
post() {  # post URL FILE; the token goes to curl on its standard input, not its command line
  if [[ $DRY_RUN == 1 ]]; then
    show curl -sS -X POST "$1" --data-binary "@$2" -H @- -H 'Content-Type: application/json'
    return 0
  fi
  printf '+ POST %s < %s\n' "$1" "$2" >&2
  local status body
  body="$(mktemp)"
  status="$(printf 'Authorization: Bearer %s\n' "$(gcloud auth print-access-token)" \
    | curl -sS -o "$body" -w '%{http_code}' -X POST "$1" --data-binary "@$2" -H @- \
      -H 'Content-Type: application/json')" || status=000
  case "$status" in
    200) rm -f "$body"; return 0 ;;
    409) rm -f "$body"; printf '  (already exists, kept)\n' >&2; return 0 ;;
    *) cat "$body" >&2; rm -f "$body"; die "POST $1 answered $status" ;;
  esac
}
post "$MONITORING_API?serviceId=occupancy" "$MONITORING/service.json"
for slo in "$MONITORING"/slos/*.json; do
  post "$MONITORING_API/occupancy/serviceLevelObjectives?serviceLevelObjectiveId=$(basename "$slo" .json)" "$slo"
done
channels=()
[[ -n "$NOTIFICATION_CHANNELS" ]] && channels=("--notification-channels=$NOTIFICATION_CHANNELS")
# A policy on an SLO names it by the project's path: PROJECT_ID in the file is this project.
RENDERED="$(mktemp -d)"
trap 'rm -rf "$RENDERED"' EXIT
for template in "$MONITORING"/policies/*.json; do
  policy="$RENDERED/$(basename "$template")"
  sed "s|projects/PROJECT_ID/|projects/$PROJECT/|g" "$template" >"$policy"
  if [[ $DRY_RUN != 1 ]] && exists policies "$(display_name "$policy")"; then
    printf '  policy "%s" exists, kept\n' "$(display_name "$policy")" >&2
    continue
  fi
  # Created once: a create retried after a failure that did create would make a second policy.
  if [[ $DRY_RUN == 1 ]]; then  # the file as in the repository (PROJECT_ID replaced when run)
    show gcloud alpha monitoring policies create "$P" "--policy-from-file=$template" ${channels[@]+"${channels[@]}"}
  else
    printf '+ %s\n' "$(show gcloud alpha monitoring policies create "$P" "--policy-from-file=$policy")" >&2
    gcloud alpha monitoring policies create "$P" "--policy-from-file=$policy" ${channels[@]+"${channels[@]}"} >/dev/null
  fi
done
if [[ $DRY_RUN == 1 ]] || ! exists dashboards "$(display_name "$MONITORING/dashboard.json")"; then
  run gcloud monitoring dashboards create "$P" "--config-from-file=$MONITORING/dashboard.json"
fi

# --- the API's edge (--api-domain): HTTPS load balancer + Cloud Armor rate limit ---
# Cloud Run has no per-client limit of its own. A crowd of dashboards costs one read per
# interval (the API's caches); this bounds what one client address can ask: 600 a minute is
# about 25 open dashboards behind one address (a station's Wi-Fi), each polling every 5 s.
if [[ -n "$API_DOMAIN" ]]; then
  EDGE="occupancy-api-edge"
  RATE_RULE=(1000 "$P" "--security-policy=$EDGE" "--src-ip-ranges=*" --action=throttle
    "--rate-limit-threshold-count=$API_RATE_LIMIT" --rate-limit-threshold-interval-sec=60
    --conform-action=allow --exceed-action=deny-429 --enforce-on-key=IP)
  create gcloud compute security-policies create "$EDGE" "$P" \
    "--description=Train occupancy API: requests a minute per client address"
  create gcloud compute security-policies rules create "${RATE_RULE[@]}"
  run gcloud compute security-policies rules update "${RATE_RULE[@]}"  # the limit as given now
  create gcloud compute network-endpoint-groups create "$EDGE" "$P" "--region=$REGION" \
    --network-endpoint-type=serverless "--cloud-run-service=$API_SERVICE"
  create gcloud compute backend-services create "$EDGE" "$P" --global --load-balancing-scheme=EXTERNAL_MANAGED
  create gcloud compute backend-services add-backend "$EDGE" "$P" --global \
    "--network-endpoint-group=$EDGE" "--network-endpoint-group-region=$REGION"
  run gcloud compute backend-services update "$EDGE" "$P" --global "--security-policy=$EDGE"
  create gcloud compute url-maps create "$EDGE" "$P" "--default-service=$EDGE"
  create gcloud compute ssl-certificates create "$EDGE" "$P" --global "--domains=$API_DOMAIN"
  create gcloud compute target-https-proxies create "$EDGE" "$P" "--url-map=$EDGE" "--ssl-certificates=$EDGE"
  create gcloud compute addresses create "$EDGE" "$P" --global
  create gcloud compute forwarding-rules create "$EDGE" "$P" --global --load-balancing-scheme=EXTERNAL_MANAGED \
    "--target-https-proxy=$EDGE" "--address=$EDGE" --ports=443
fi

if [[ $DRY_RUN != 1 ]]; then
  cat >&2 <<EOF
Done. Pipeline service account: $PIPELINE_SA
Image repository: $REGION-docker.pkg.dev/$PROJECT/$REPOSITORY
API service account: $API_SA
Next: make template PROJECT=$PROJECT REGION=$REGION BUCKET=$BUCKET
      make api-deploy PROJECT=$PROJECT REGION=$REGION BUCKET=$BUCKET
EOF
  if [[ -n "$API_DOMAIN" ]]; then
    cat >&2 <<EOF
API edge: point $API_DOMAIN (a DNS A record) at the address that
      gcloud compute addresses describe occupancy-api-edge --global $P --format='value(address)'
  prints, then: make api-deploy ... API_INGRESS=internal-and-cloud-load-balancing
EOF
  fi
fi
