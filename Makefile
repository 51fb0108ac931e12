# Two commands do everything on a fresh machine (see README):
#   make run    emulators + demo fleet + pipeline + simulated devices + live table
#   make test   the whole test suite (unit, TestStream, end-to-end on the emulators)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# e.g. make run DEMO_ARGS="--duration 60 --seed 7"
DEMO_ARGS ?=

# The Firebase Authentication emulator (npm's firebase-tools), for the API's sign-in locally.
FIREBASE_TOOLS_VERSION ?= 15.34.2
FIREBASE := .local/firebase-tools/node_modules/.bin/firebase

.PHONY: install install-firebase install-browser install-broker bench-bridge run test test-fast lint format check-prereqs clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(FIREBASE):
	@command -v npm >/dev/null || { echo "error: npm not found: the Firebase Auth emulator needs node and npm (e.g. apt-get install nodejs npm)" >&2; exit 1; }
	npm install --prefix .local/firebase-tools --no-audit --no-fund --loglevel=error firebase-tools@$(FIREBASE_TOOLS_VERSION)
	@touch $(FIREBASE)

install: $(STAMP)

install-firebase: $(FIREBASE)

# Headless Chromium and its driver for the dashboard's browser tests (Debian packages).
install-browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	else echo "error: the browser tests need Chromium and its driver: sudo apt-get install chromium chromium-driver" >&2; exit 1; fi

# The MQTT broker for devices that speak MQTT (Debian's mosquitto; docs/operations.md, "MQTT devices").
install-broker:
	@if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing mosquitto (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto >/dev/null; }; \
	else echo "error: MQTT devices need the mosquitto broker: sudo apt-get install mosquitto" >&2; exit 1; fi

check-prereqs: install install-firebase install-broker
	$(PY) -m local.prereqs

run: check-prereqs
	$(PY) -m local.demo $(DEMO_ARGS)

test: lint check-prereqs install-browser
	$(PY) -m pytest tests $(PYTEST_ARGS)

# ruff (settings in pyproject.toml): lint, the import order and the format. `make test` runs it first.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Formats every file and fixes what ruff can fix by itself (import order, unused imports).
format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Pure logic and TestStream tests only: no emulators needed.
test-fast: install
	$(PY) -m pytest tests -m "not emulator" $(PYTEST_ARGS)

# The images' exact packages with their hashes: requirements/api.lock (api/Dockerfile) and
# requirements/pipeline.lock (templates/Dockerfile, the job's launcher and workers), each resolved
# from its setup.py extra for the images' Python (3.11, Linux). Keeps the pins that still satisfy
# setup.py; UPGRADE=1 takes the newest allowed. tests/test_lock.py fails when setup.py asks for
# something a lock does not give.
LOCKED_EXTRAS := api pipeline
.PHONY: lock
lock: install
	for extra in $(LOCKED_EXTRAS); do \
	  $(VENV)/bin/uv pip compile setup.py --extra $$extra --generate-hashes --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 --no-header --quiet $(if $(UPGRADE),--upgrade) \
	    -o requirements/$$extra.lock || exit 1; \
	done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# ---- Dataflow (docs/operations.md, "Deploy to Dataflow") ---------------------------------
# Needs PROJECT, REGION and BUCKET, e.g.
#   make deploy-infra template launch PROJECT=my-project REGION=europe-west1 BUCKET=my-project-occupancy
# IMAGE and TEMPLATE_SPEC default to names derived from them and TAG (the git
# commit): every `make template` keeps its own image and spec, so a rollback is
# `make launch UPDATE=1 TAG=<previous tag>`.
PROJECT ?=
REGION ?=
BUCKET ?=
REPOSITORY ?= occupancy
TAG ?= $(shell git describe --always --dirty 2>/dev/null)
IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPOSITORY)/occupancy-pipeline:$(TAG)
TEMPLATE_SPEC ?= gs://$(BUCKET)/templates/occupancy-$(TAG).json
# The batch replay's spec, on the same image (templates/replay.json).
REPLAY_SPEC ?= gs://$(BUCKET)/templates/occupancy-replay-$(TAG).json
# The forecast job's spec, on the same image (templates/forecast.json).
FORECAST_SPEC ?= gs://$(BUCKET)/templates/occupancy-forecast-$(TAG).json
JOB_NAME ?= occupancy
SUBSCRIPTION ?= projects/$(PROJECT)/subscriptions/occupancy-pipeline
DEAD_LETTER_TOPIC ?= projects/$(PROJECT)/topics/occupancy-dead-letters
PIPELINE_SA ?= occupancy-pipeline@$(PROJECT).iam.gserviceaccount.com
# More template parameters (launch), space-separated: PARAMS="daily_reset=03:00 timezone=Europe/Vienna"
PARAMS ?=
# More pipeline options (dataflow): ARGS="--daily_reset 03:00 --timezone Europe/Vienna"
ARGS ?=
# UPDATE=1: replace the running job of the same JOB_NAME in place (--update).
UPDATE ?=
# DRY_RUN=1: deploy-infra prints its gcloud commands; dataflow builds the job offline.
DRY_RUN ?=
# BUILD=docker: build and push the image with the local docker instead of Cloud Build.
BUILD ?= cloudbuild
# Beam's version lives in setup.py only; the image is built with it.
SETUP_BEAM_VERSION = $(shell sed -n 's/^BEAM_VERSION = "\(.*\)"$$/\1/p' setup.py)

require = $(if $(strip $($(1))),,$(error $(1) is not set: run make $@ PROJECT=<project-id> REGION=<region> BUCKET=<bucket> (docs/operations.md, "Deploy to Dataflow")))
require_cloud = $(call require,PROJECT)$(call require,REGION)$(call require,BUCKET)

.PHONY: deploy-infra template-image template launch replay forecast-launch dataflow drain

# Topic, subscriptions, dead-letter topic, service accounts with least-privilege
# roles, staging bucket, image repository, Firestore indexes (deploy/infra.sh).
deploy-infra:
	@:$(require_cloud)
	bash deploy/infra.sh --project '$(PROJECT)' --region '$(REGION)' --bucket '$(BUCKET)' $(if $(DRY_RUN),--dry-run) \
	  $(if $(API_DOMAIN),--api-domain '$(API_DOMAIN)' --api-service '$(API_SERVICE)' --api-rate-limit '$(API_RATE_LIMIT)')

# The launcher + worker image (templates/Dockerfile), built from the repository root.
template-image:
	@:$(require_cloud)$(call require,TAG)$(call require,SETUP_BEAM_VERSION)
ifeq ($(BUILD),docker)
	docker build -f templates/Dockerfile --build-arg BEAM_VERSION=$(SETUP_BEAM_VERSION) -t '$(IMAGE)' .
	docker push '$(IMAGE)'
else
	gcloud builds submit --project='$(PROJECT)' --config=templates/cloudbuild.yaml \
	  --ignore-file=templates/.gcloudignore \
	  --substitutions='_IMAGE=$(IMAGE),_BEAM_VERSION=$(SETUP_BEAM_VERSION)' .
endif

# Image, then the template spec (gs://BUCKET/templates/occupancy-TAG.json). gcloud builds and
# checks the spec; it drops the metadata's streaming fields, which pipeline.launch puts back.
# Then the batch replay's and the forecast's specs on the same image (occupancy-replay-TAG.json,
# occupancy-forecast-TAG.json).
template: template-image
	@:$(require_cloud)
	mkdir -p .local
	gcloud dataflow flex-template build '$(TEMPLATE_SPEC)' --project='$(PROJECT)' \
	  --image='$(IMAGE)' --sdk-language=PYTHON --metadata-file=templates/metadata.json \
	  --service-account-email='$(PIPELINE_SA)' --enable-streaming-engine \
	  --staging-location='gs://$(BUCKET)/staging' --temp-location='gs://$(BUCKET)/tmp' --print-only \
	  | $(PY) -m pipeline.launch complete-spec --metadata templates/metadata.json > .local/template-spec.json
	gcloud storage cp .local/template-spec.json '$(TEMPLATE_SPEC)' --project='$(PROJECT)'
	$(PY) -m pipeline.template_metadata templates/replay.json > .local/replay-metadata.json
	gcloud dataflow flex-template build '$(REPLAY_SPEC)' --project='$(PROJECT)' \
	  --image='$(IMAGE)' --sdk-language=PYTHON --metadata-file=.local/replay-metadata.json \
	  --service-account-email='$(PIPELINE_SA)' \
	  --staging-location='gs://$(BUCKET)/staging' --temp-location='gs://$(BUCKET)/tmp'
	$(PY) -m pipeline.template_metadata templates/forecast.json > .local/forecast-metadata.json
	gcloud dataflow flex-template build '$(FORECAST_SPEC)' --project='$(PROJECT)' \
	  --image='$(IMAGE)' --sdk-language=PYTHON --metadata-file=.local/forecast-metadata.json \
	  --service-account-email='$(PIPELINE_SA)' \
	  --staging-location='gs://$(BUCKET)/staging' --temp-location='gs://$(BUCKET)/tmp'
	@echo "template $(TEMPLATE_SPEC), replay template $(REPLAY_SPEC), forecast template $(FORECAST_SPEC), image $(IMAGE)"

# Starts the job from the template through the Dataflow API (python -m pipeline.launch);
# UPDATE=1 replaces the running job of that name, MAPPINGS="Old=New ..." for renamed steps.
MAPPINGS ?=
launch: install
	@:$(require_cloud)$(call require,TAG)
	$(PY) -m pipeline.launch launch --project '$(PROJECT)' --region '$(REGION)' --job_name '$(JOB_NAME)' \
	  --template '$(TEMPLATE_SPEC)' --service_account '$(PIPELINE_SA)' \
	  --staging_location 'gs://$(BUCKET)/staging' --temp_location 'gs://$(BUCKET)/tmp' \
	  $(if $(SUBSCRIPTION),--parameter 'input_subscription=$(SUBSCRIPTION)') \
	  $(if $(DEAD_LETTER_TOPIC),--parameter 'dead_letter_topic=$(DEAD_LETTER_TOPIC)') \
	  --parameter 'sdk_container_image=$(IMAGE)' \
	  $(foreach p,$(PARAMS),--parameter '$(p)') $(if $(UPDATE),--update) \
	  $(foreach m,$(MAPPINGS),--transform_name_mapping '$(m)')

# A batch replay of archived events from the replay template (docs/operations.md, "TIDES tables,
# replay and backfill"): ARCHIVE='gs://bucket/events/*', PARAMS for its collections and output.
ARCHIVE ?=
REPLAY_JOB_NAME ?= occupancy-replay
replay: install
	@:$(require_cloud)$(call require,TAG)$(call require,ARCHIVE)
	$(PY) -m pipeline.launch launch --batch --project '$(PROJECT)' --region '$(REGION)' --job_name '$(REPLAY_JOB_NAME)' \
	  --template '$(REPLAY_SPEC)' --service_account '$(PIPELINE_SA)' \
	  --staging_location 'gs://$(BUCKET)/staging' --temp_location 'gs://$(BUCKET)/tmp' \
	  --parameter 'archive=$(ARCHIVE)' --parameter 'sdk_container_image=$(IMAGE)' \
	  $(foreach p,$(PARAMS),--parameter '$(p)')

# The forecast job from its template (docs/forecast.md): its history in TIDES_INPUT (the
# occupancy job's tides_output, on Cloud Storage) or TIDES_BIGQUERY (its tides_bigquery,
# PROJECT.DATASET), GTFS_STATIC and FORECAST_OUTPUT on Cloud Storage; PARAMS for the rest
# (forecast_start=YYYY-MM-DD forecast_days=28 forecast_bigquery=PROJECT.DATASET ...).
TIDES_INPUT ?=
TIDES_BIGQUERY ?=
GTFS_STATIC ?=
FORECAST_OUTPUT ?=
FORECAST_JOB_NAME ?= occupancy-forecast
history_source = $(if $(TIDES_INPUT),$(if $(TIDES_BIGQUERY),$(error give TIDES_INPUT or TIDES_BIGQUERY, not both),tides_input=$(TIDES_INPUT)),$(if $(TIDES_BIGQUERY),tides_bigquery=$(TIDES_BIGQUERY),$(error TIDES_INPUT or TIDES_BIGQUERY is not set: where the TIDES history is (docs/forecast.md))))
forecast-launch: install
	@:$(require_cloud)$(call require,TAG)$(history_source)$(call require,GTFS_STATIC)$(call require,FORECAST_OUTPUT)
	$(PY) -m pipeline.launch launch --batch --project '$(PROJECT)' --region '$(REGION)' --job_name '$(FORECAST_JOB_NAME)' \
	  --template '$(FORECAST_SPEC)' --service_account '$(PIPELINE_SA)' \
	  --staging_location 'gs://$(BUCKET)/staging' --temp_location 'gs://$(BUCKET)/tmp' \
	  --parameter '$(history_source)' --parameter 'gtfs_static=$(GTFS_STATIC)' \
	  --parameter 'forecast_output=$(FORECAST_OUTPUT)' --parameter 'sdk_container_image=$(IMAGE)' \
	  $(foreach p,$(PARAMS),--parameter '$(p)')

# Direct launch from this checkout, without a template. Workers run IMAGE (built by
# `make template-image`: the stock Beam image lacks the Firestore client) with this
# checkout's code (--setup_file). Blocks while the job runs; Ctrl-C leaves it running.
dataflow: install
	@:$(require_cloud)
	$(PY) -m pipeline.main --runner DataflowRunner --streaming --enable_streaming_engine \
	  --setup_file ./setup.py --sdk_container_image '$(IMAGE)' \
	  --project '$(PROJECT)' --region '$(REGION)' --job_name '$(JOB_NAME)' \
	  --temp_location 'gs://$(BUCKET)/tmp' --staging_location 'gs://$(BUCKET)/staging' \
	  --service_account_email '$(PIPELINE_SA)' \
	  $(if $(SUBSCRIPTION),--input_subscription '$(SUBSCRIPTION)') \
	  $(if $(DEAD_LETTER_TOPIC),--dead_letter_topic '$(DEAD_LETTER_TOPIC)') \
	  $(if $(UPDATE),--update) $(if $(DRY_RUN),--dry_run=True) $(ARGS)

# Drains / cancels the active job of JOB_NAME; `make status` shows its state, workers and counters.
.PHONY: cancel status
drain cancel status: install
	@:$(call require,PROJECT)$(call require,REGION)
	$(PY) -m pipeline.launch $@ --project '$(PROJECT)' --region '$(REGION)' --job_name '$(JOB_NAME)'

# ---- The API (docs/api.md) ------------------------------------------------
# make api: serves it alone on API_PORT. Without PROJECT, against emulators it starts
# itself (Firestore, Auth); with PROJECT=..., against that project with ADC.
API_PORT ?= 8080
API_SERVICE ?= occupancy-api
API_SA ?= occupancy-api@$(PROJECT).iam.gserviceaccount.com
API_IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPOSITORY)/occupancy-api:$(TAG)
# Extra `python -m api` flags, e.g. API_ARGS="--private_reads"
API_ARGS ?=
# With the load balancer and its rate limit (make deploy-infra API_DOMAIN=...): internal-and-cloud-load-balancing.
API_INGRESS ?= all
API_DOMAIN ?=
API_RATE_LIMIT ?= 600
# Bounds what a flood of requests can cost (instances x 80 concurrent requests).
API_MAX_INSTANCES ?= 10
# Google's Managed Service for Prometheus collector, deployed beside the API on Cloud Run: with its
# default configuration it scrapes the API's /metrics on localhost:8080 once a minute into Cloud
# Monitoring (prometheus.googleapis.com/..., what the API's alert policies and dashboard tiles read).
# Empty: the API alone, no collector.
API_METRICS_SIDECAR ?= us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0

.PHONY: api api-deploy rules-deploy
api: check-prereqs
ifeq ($(strip $(PROJECT)),)
	$(PY) -m local.api_alone --port $(API_PORT) $(API_ARGS)
else
	$(PY) -m api --project '$(PROJECT)' --port $(API_PORT) $(API_ARGS)
endif

# Builds the API image on Cloud Build and deploys it to Cloud Run as API_SERVICE, running
# as its own service account (deploy/infra.sh: Datastore User and Firebase Auth Viewer). Public ingress:
# the API checks tokens itself (occupancy reads public, devices and writes need an operator).
api-deploy:
	@:$(require_cloud)$(call require,TAG)
	gcloud builds submit --project='$(PROJECT)' --config=templates/cloudbuild.yaml \
	  --ignore-file=templates/.gcloudignore \
	  --substitutions='_DOCKERFILE=api/Dockerfile,_IMAGE=$(API_IMAGE),_BEAM_VERSION=$(SETUP_BEAM_VERSION)' .
	gcloud run deploy '$(API_SERVICE)' --project='$(PROJECT)' --region='$(REGION)' \
	  --service-account='$(API_SA)' --allow-unauthenticated --ingress='$(API_INGRESS)' \
	  --max-instances='$(API_MAX_INSTANCES)' \
	  --container=api --image='$(API_IMAGE)' --port=8080 \
	  --set-env-vars='GOOGLE_CLOUD_PROJECT=$(PROJECT)' $(if $(API_ARGS),--args='$(API_ARGS)') \
	  $(if $(API_METRICS_SIDECAR),--container=collector --image='$(API_METRICS_SIDECAR)' --depends-on=api)
	@gcloud run services describe '$(API_SERVICE)' --project='$(PROJECT)' --region='$(REGION)' --format='value(status.url)'

# deploy/firestore.rules (clients read realtime, trains, history; nothing else) with firebase-tools.
rules-deploy: install-firebase
	@:$(call require,PROJECT)
	cd deploy && ../$(FIREBASE) deploy --only firestore:rules --project '$(PROJECT)' --non-interactive

# Counting accuracy under sensor error (docs/accuracy.md): service days through the
# job's steps on FnApiRunner; prints the table and writes bench/accuracy.json. Under 10 minutes.
.PHONY: accuracy
accuracy: install
	$(PY) -m bench.accuracy

# The forecast's rolling-origin backtest on simulated weeks (docs/forecast.md): prints the
# table against the baselines, writes bench/forecast.json and bench/forecast.png.
.PHONY: forecast
forecast: install
	$(PY) -m bench.forecast

# Fault suite (docs/faults.md): its own emulators, the real pipeline; prints the table and
# writes faults/results.json. Under 20 minutes; `make test` runs its short form.
.PHONY: faults
faults: install
	$(PY) -m faults

# Benchmark (docs/benchmarks.md): starts its own emulators; prints one table and writes
# bench/results.json and bench/results.md. Under 10 minutes; bench-smoke takes seconds.
.PHONY: bench bench-smoke bench-scale
# The job's steps at 10 to 10,000 trains (FnApiRunner), state and document sizes, a profile:
# bench/scale.json, bench/scale.png and a table (docs/sizing.md). About 40 minutes.
bench-scale: install
	$(PY) -m bench.scale

bench: install
	$(PY) -m bench

# The MQTT path: bridge throughput, device-to-realtime latency over MQTT against straight Pub/Sub.
bench-bridge: install
	$(PY) -m bench.bridge --messages 20000

bench-smoke: install
	$(PY) -m bench --smoke --output .local/bench-smoke
