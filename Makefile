# Gatehouse build. `make help` lists the targets.
#
# Tools come from the Go module proxy only: controller-gen is a `tool`
# directive in go.mod; kube-apiserver, etcd and kubectl (for envtest, the demo
# and `kubectl kustomize`) are built from the Kubernetes Go modules by
# hack/envtest-assets.sh and cached outside the repository; the e2e cluster's
# binaries likewise by hack/e2e/assets.sh.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

IMG_MANAGER ?= ghcr.io/gatehouse-dev/gatehouse-manager:v0.1.0
IMG_SIDECAR ?= ghcr.io/gatehouse-dev/gatehouse-sidecar:v0.1.0
CONTAINER_TOOL ?= docker
GO_TEST_FLAGS ?= -count=1 -timeout 25m
CONTROLLER_GEN := go tool controller-gen
# golangci-lint with kube-api-linter built in as a module plugin, from its own
# module (hack/tools/go.mod) so the linter's dependencies never change the
# product's; `go tool` builds it from the Go module proxy and caches it.
GOLANGCI_LINT := go tool -modfile=hack/tools/go.mod golangci-lint-kube-api-linter
ENVTEST_ASSETS = $(shell hack/envtest-assets.sh)
KUBECTL ?= $(ENVTEST_ASSETS)/kubectl

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs, RBAC and webhook manifests from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: api-docs
api-docs: manifests ## Generate docs/api.md, the CRD field reference, from the CRDs.
	go run ./hack/apidocs config/crd/bases docs/api.md

.PHONY: verify-generated
verify-generated: manifests generate api-docs ## Fail when generated files are not committed.
	@git diff --exit-code -- api config docs/api.md || { echo "generated files are stale: run 'make manifests generate api-docs' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config docs/api.md)" || { git status --porcelain -- api config docs/api.md; echo "untracked generated files: commit them"; exit 1; }

.PHONY: fmt
fmt: ## Run gofmt on the tree.
	gofmt -l -w $$(git ls-files '*.go') 

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: ## Run golangci-lint (the kubebuilder scaffold's linters) and kube-api-linter over api/.
	$(GOLANGCI_LINT) run ./...

.PHONY: lint-fix
lint-fix: ## Run golangci-lint and apply its automatic fixes.
	$(GOLANGCI_LINT) run --fix ./...

.PHONY: redis
redis: ## Install redis-server from the OS packages when missing.
	hack/install-redis.sh

.PHONY: envtest
envtest: ## Build (once) and print the envtest binaries directory.
	@hack/envtest-assets.sh

.PHONY: test
test: manifests generate fmt vet redis ## Run every test against real Redis and a real API server (envtest).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v -e /test/reliability -e /test/e2e)
	$(MAKE) test-reliability

.PHONY: fuzz
fuzz: ## Run each fuzz target briefly (FUZZTIME, default 10s).
	hack/fuzz.sh $${FUZZTIME:-10s}

##@ End to end, on a real one-node cluster (docs/e2e.md; needs root)

.PHONY: e2e
e2e: ## Start a one-node cluster, install Gatehouse as the README says, run every scenario on real pods, stop it and check the host.
	hack/e2e/run.sh

.PHONY: e2e-up
e2e-up: ## Start the e2e cluster (kubelet, containerd, kube-proxy, CoreDNS) in its own network namespace.
	hack/e2e/cluster.sh up

.PHONY: e2e-down
e2e-down: ## Stop the e2e cluster and check the host is exactly as before e2e-up.
	hack/e2e/cluster.sh down

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager and sidecar binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bin/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bin/gatehouse-sidecar ./cmd/sidecar

.PHONY: run
run: manifests generate ## Run the manager against the cluster in ~/.kube/config.
	go run ./cmd/manager

.PHONY: demo
demo: redis ## Run the whole system locally (Redis Cluster, API server, manager, sidecar, sample app).
	hack/demo.sh

.PHONY: demo-check
demo-check: redis ## Run the demo's scripted tour non-interactively; fails if any step misbehaves.
	hack/demo.sh --check

.PHONY: docker-build
docker-build: ## Build the manager and sidecar images (needs a container engine).
	$(CONTAINER_TOOL) build -f Dockerfile.manager -t $(IMG_MANAGER) .
	$(CONTAINER_TOOL) build -f Dockerfile.sidecar -t $(IMG_SIDECAR) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster in ~/.kube/config.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the cluster.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator (CRDs, RBAC, manager, webhook) to the cluster in ~/.kube/config.
	$(KUBECTL) apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster.
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ Benchmarks and reliability

.PHONY: bench
bench: redis ## Measure the sidecar against a bare reverse proxy and nginx; rewrites docs/benchmarks.md (about 7 minutes).
	hack/bench.sh

.PHONY: test-reliability
test-reliability: redis ## Run the reliability suite: faults under load through two sidecars on a Redis Cluster; prints what was lost.
	go test -count=1 -v -timeout 10m ./test/reliability/
