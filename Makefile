# Surge: `make run` starts the whole system locally, `make test` runs every
# test, `make test-short` the fast tier. See README.md.

GO          ?= go
SHARED      ?= $(abspath ../shared)
# A directory of model folders; ../shared/models on a machine that has it.
MODELS      ?= $(if $(wildcard $(SHARED)/models),$(SHARED)/models,)
PORT        ?= 8000
# The fleet cap; the binaries default to the protocol's when it is not given.
MAX_WORKERS ?=
DATA        ?= .data
BIN         := bin
# The deployment's resource name prefix (make synth, make emulate).
PREFIX      ?= surge
# make emulate: where the emulated AWS endpoint listens, and its data
# (DATA when given, else .emulate).
MOTO_PORT   ?= 5000
EMULATE_DATA = $(if $(filter command line environment,$(origin DATA)),$(DATA),.emulate)
# COURSE=2026 deploys for the course's 2026 grader (make synth, make
# emulate): the stack then defaults to a cap of 15 and the exact bucket
# names, so the cap is passed only when given, and the emulated region
# is that grader's hard-coded us-west-2 unless AWS_REGION says otherwise.
COURSE      ?=
COURSE_ARGS  = $(if $(COURSE),-c course=$(COURSE))
# WEB=N runs N web tiers: locally on one port behind the kernel's
# SO_REUSEPORT (make run, make chaos); emulated, the stack's web
# instances behind a load balancer, N of them (-c webMax=N -c webMin=N:
# moto does not scale the group; 1 keeps the course's single
# web-instance). make bench WEB=N measures N against one.
WEB         ?= 1
WEB_ARGS     = $(if $(filter-out 1,$(WEB)),-c webMax=$(WEB) -c webMin=$(WEB))
BENCH_WEB    = $(if $(or $(findstring $(comma),$(WEB)),$(filter 1,$(WEB))),$(WEB),1,$(WEB))
comma       := ,
CAP_ARGS     = $(if $(filter command line environment,$(origin MAX_WORKERS)),-c maxWorkers=$(MAX_WORKERS))
EMULATE_REGION = $(or $(AWS_REGION),$(if $(filter 2026,$(COURSE)),us-west-2))

export SURGE_CACHE  ?= $(CURDIR)/.cache
export SURGE_MODELS ?= $(MODELS)
export SURGE_SHARED ?= $(SHARED)
# The CDK's JavaScript runtime keeps its caches here, not in $HOME.
export JSII_RUNTIME_PACKAGE_CACHE_ROOT ?= $(SURGE_CACHE)/jsii
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 20
export CDK_HOME ?= $(SURGE_CACHE)/cdk
export CDK_DISABLE_CLI_TELEMETRY ?= true

.PHONY: build ort cdk-cli run emulate synth check test test-short test-arm64 bench bench-cloud chaos classify enroll workload clean

build:
	$(GO) build -o $(BIN)/ ./cmd/surge ./webtier ./worker ./lambdas/scaler ./lambdas/stackhooks

# The ONNX Runtime library, downloaded once into $(SURGE_CACHE) and checked
# against its SHA-256.
ort: build
	$(BIN)/surge fetch -runtime-only

# The AWS CDK CLI at the version the tests deploy with, downloaded once
# into $(SURGE_CACHE) and checked against its SHA-256 (`surge cdk ...`
# runs it).
cdk-cli: build
	$(BIN)/surge fetch -cdk-cli

run: build ort
	$(BIN)/surge run -data $(DATA) -port $(PORT) -web $(WEB) $(if $(MAX_WORKERS),-max-workers $(MAX_WORKERS)) $(if $(GALLERY),-gallery $(GALLERY))

# The AWS deployment on emulated AWS: moto_server behind an endpoint with
# AWS's behaviours, its instances and Lambdas run here; the stack deployed
# into it by the AWS CDK CLI as a user deploys (cdk bootstrap, cdk deploy
# of cdk.json's app with these -c flags), and destroyed at Ctrl-C.
# AWS_REGION chooses the region; more in docs/aws.md.
EMULATE_CONTEXT = -c prefix=$(PREFIX) -c allowedCidr=127.0.0.1/32 $(COURSE_ARGS) $(CAP_ARGS) $(WEB_ARGS) \
	$(if $(GALLERY),-c gallery=$(abspath $(GALLERY))) $(CDK_ARGS)
emulate: build ort cdk-cli
	$(if $(EMULATE_REGION),AWS_REGION=$(EMULATE_REGION) )$(BIN)/surge emulate -data $(EMULATE_DATA) -endpoint-port $(MOTO_PORT) -port $(PORT) \
		$(EMULATE_ARGS) -- $(EMULATE_CONTEXT)

# The CloudFormation template, offline, synthesized by the AWS CDK CLI as
# cdk deploy would (cdk.json's app) into cdk.out/<stack>.template.json
# (the stack is named PREFIX, or surge-PREFIX for a prefix that starts
# with a digit, and CDK_ARGS may set the prefix too), checked by cfn-lint.
# Deploy options go in CDK context: make synth
# CDK_ARGS="-c allowedCidr=203.0.113.7/32".
synth: ort cdk-cli
	rm -rf cdk.out
	$(BIN)/surge cdk synth -q -c prefix=$(PREFIX) $(COURSE_ARGS) $(CDK_ARGS)
	cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json

# Source checks, first because they are quick: formatting, a tidy go.mod,
# go vet and staticcheck (pinned in go.mod as a tool).
GOFILES = $(shell find . -name '*.go' -not -path './.*' -not -path '*/node_modules/*' -not -path './cdk.out/*')
check:
	@unformatted="$$(gofmt -l $(GOFILES))"; if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files are not formatted (run gofmt -w):"; echo "$$unformatted"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy (run go mod tidy)"; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

test: check ort cdk-cli synth
	$(GO) test -timeout 15m ./...

# The fast tier: pure and single-process tests, with the fakes named as
# such; no moto, model, ../shared, built binaries or node (docs/testing.md).
test-short:
	$(GO) test -short ./...

# The arm64 (Graviton) build of `surge classify` run under qemu with the
# arm64 ONNX Runtime, against this machine's build, on the shared photos
# and faces. Needs Debian's qemu-user-static and the arm64 C libraries
# (dpkg --add-architecture arm64; apt-get install qemu-user-static
# libc6:arm64 libstdc++6:arm64), which make test does not.
test-arm64: ort
	$(GO) test -tags arm64emu -count=1 -timeout 60m -v -run TestArm64 ./cmd/surge

bench: build ort
	$(BIN)/surge bench -images $(SHARED)/datasets/faces/face_images_1000 -web $(BENCH_WEB) $(if $(MAX_WORKERS),-max-workers $(MAX_WORKERS))

bench-cloud: build ort
	$(BIN)/surge bench-cloud -images $(SHARED)/datasets/faces/face_images_1000 $(if $(MAX_WORKERS),-max-workers $(MAX_WORKERS)) \
		$(if $(TIME_SCALE),-time-scale $(TIME_SCALE)) $(if $(LATENCY),-latency $(LATENCY))

# The face workload while workers (and, with WEB=N above 1, web tiers)
# are killed with SIGKILL, the scaler restarted and the whole system
# restarted once on the same data; exits non-zero if any answer was wrong
# or any request lost. REQUESTS=3000.
REQUESTS ?= 3000
FACES     = $(SHARED)/datasets/faces
chaos: build ort
	$(BIN)/surge enroll -images $(FACES)/face_images_100 -labels $(FACES)/face_images_100.csv -gallery $(SURGE_CACHE)/faces.gallery
	$(BIN)/surge chaos -images $(FACES)/face_images_1000 -labels $(FACES)/face_images_1000.csv -gallery $(SURGE_CACHE)/faces.gallery \
		-requests $(REQUESTS) -web $(WEB) $(if $(MAX_WORKERS),-max-workers $(MAX_WORKERS)) $(CHAOS_ARGS)

classify: build ort
	@test -n "$(FILES)" || { echo 'usage: make classify FILES="a.jpg b.jpg" [GALLERY=faces.gallery]'; exit 2; }
	$(BIN)/surge classify $(if $(GALLERY),-gallery $(GALLERY)) $(FILES)

enroll: build ort
	@test -n "$(IMAGES)" -a -n "$(LABELS)" -a -n "$(GALLERY)" || { echo 'usage: make enroll IMAGES=<dir> LABELS=<csv> GALLERY=<file>'; exit 2; }
	$(BIN)/surge enroll -images $(IMAGES) -labels $(LABELS) -gallery $(GALLERY)

# make workload takes the course generator's names too (NUM_REQUEST,
# IP_ADDR for http://IP:8000/, IMAGE_FOLDER, PREDICTION_FILE); a URL given
# wins over IP_ADDR. RETRIES: passes re-sending failures (default 1).
URL ?= http://127.0.0.1:$(PORT)/
workload: build
	@test -n "$(IMAGES)$(IMAGE_FOLDER)" || { echo 'usage: make workload IMAGES=<dir> [LABELS=<csv>] [URL=$(URL)] [RETRIES=1]'; \
		echo '   or: make workload NUM_REQUEST=<n> IP_ADDR=<ip> IMAGE_FOLDER=<dir> PREDICTION_FILE=<csv>'; exit 2; }
	$(BIN)/surge workload $(if $(IP_ADDR),$(if $(filter file,$(origin URL)),,-url $(URL)) --ip_addr=$(IP_ADDR),-url $(URL)) \
		$(if $(IMAGES),-images $(IMAGES)) $(if $(IMAGE_FOLDER),--image_folder=$(IMAGE_FOLDER)) \
		$(if $(LABELS),-labels $(LABELS)) $(if $(PREDICTION_FILE),--prediction_file=$(PREDICTION_FILE)) \
		$(if $(NUM_REQUEST),--num_request=$(NUM_REQUEST)) $(if $(RETRIES),-retries=$(RETRIES))

clean:
	rm -rf $(BIN) $(DATA) .emulate cdk.out
