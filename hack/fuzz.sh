#!/usr/bin/env bash
# Runs every Go fuzz target of the repository (each `func FuzzXxx(f *testing.F)`
# in a _test.go file) for a bounded time: hack/fuzz.sh [duration], default 10s
# per target. The committed corpora under testdata/fuzz/<Target>/ run first as
# regression inputs; anything new the fuzzer finds that fails is written there
# by `go test` and makes this script fail, so commit it with the fix.
#
# Targets are discovered, never listed, so a new one is fuzzed in CI without
# touching this file.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:${PATH}"

fuzztime="${1:-10s}"

# "dir<TAB>FuzzName" for every fuzz target outside vendored or hidden trees.
mapfile -t targets < <(
	git ls-files -- '*_test.go' |
		xargs grep -HoE '^func Fuzz[A-Za-z0-9_]*\(' |
		sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1\t\2#; s#^[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#.\t\1#' |
		sort -u
)
# Fuzz targets in files not yet committed still count: a developer running
# this before committing wants them fuzzed too.
mapfile -t untracked < <(
	git ls-files --others --exclude-standard -- '*_test.go' |
		xargs -r grep -HoE '^func Fuzz[A-Za-z0-9_]*\(' |
		sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1\t\2#' |
		sort -u
)
if ((${#untracked[@]})); then
	mapfile -t targets < <(printf '%s\n' "${targets[@]}" "${untracked[@]}" | sort -u)
fi
if ((${#targets[@]} == 0)); then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

echo "fuzz: ${#targets[@]} targets, ${fuzztime} each"
failed=()
for t in "${targets[@]}"; do
	dir="${t%%$'\t'*}"
	name="${t##*$'\t'}"
	echo "=== ${name} (./${dir})"
	# -run '^$' skips the package's ordinary tests (CI ran them already);
	# the seed corpus and testdata/fuzz still run as part of fuzzing.
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "${fuzztime}" "./${dir}"; then
		failed+=("${name} (./${dir})")
	fi
done

if ((${#failed[@]})); then
	printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
