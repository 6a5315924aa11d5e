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
# fuzz_one fuzzes one target. Go before 1.27.1 has a race in its fuzzing
# coordinator (golang/go#75804): when -fuzztime's deadline fires, it can
# report a bare "context deadline exceeded" and fail a target that found
# nothing. A real finding always writes its input ("Failing input written
# to testdata/fuzz/..."), so only a failure with that message and no input
# is run again, once; a second failure of any kind fails the target.
fuzz_one() {
	local dir="$1" name="$2" out
	out="$(mktemp)"
	if go test -run '^$' -fuzz "^${name}\$" -fuzztime "${fuzztime}" "./${dir}" 2>&1 | tee "${out}"; then
		rm -f "${out}"
		return 0
	fi
	if grep -q 'context deadline exceeded' "${out}" && ! grep -q 'Failing input written to' "${out}"; then
		rm -f "${out}"
		echo "fuzz: ${name}: the coordinator's deadline race (golang/go#75804), no input written; running it again"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "${fuzztime}" "./${dir}"
		return
	fi
	rm -f "${out}"
	return 1
}

failed=()
for t in "${targets[@]}"; do
	dir="${t%%$'\t'*}"
	name="${t##*$'\t'}"
	echo "=== ${name} (./${dir})"
	# -run '^$' skips the package's ordinary tests (CI ran them already);
	# the seed corpus and testdata/fuzz still run as part of fuzzing.
	if ! fuzz_one "${dir}" "${name}"; then
		failed+=("${name} (./${dir})")
	fi
done

if ((${#failed[@]})); then
	printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
