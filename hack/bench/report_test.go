package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{name: "empty", in: nil, want: 0},
		{name: "one", in: []float64{7}, want: 7},
		{name: "odd takes the middle, unsorted input", in: []float64{9, 1, 5}, want: 5},
		{name: "even averages the middle two", in: []float64{4, 1, 3, 2}, want: 2.5},
		{name: "an outlier does not move it", in: []float64{100, 101, 1e9}, want: 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, median(tt.in)); diff != "" {
				t.Errorf("median(%v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
	if got := median([]time.Duration{3, 1, 2}); got != 2 {
		t.Errorf("median of durations = %v, want 2", got)
	}
}

// The generated block is replaced on every run; the analysis written around
// it by hand must survive.
func TestWriteReport(t *testing.T) {
	tests := []struct {
		name string
		old  *string
		want string
	}{
		{
			name: "new file",
			want: "# Benchmarks\n\n<!-- bench:begin -->\nfigures\n<!-- bench:end -->\n",
		},
		{
			name: "prose around the block is kept",
			old:  new("# B\n\nintro\n\n<!-- bench:begin -->\nold figures\n<!-- bench:end -->\n\n## Analysis\n"),
			want: "# B\n\nintro\n\n<!-- bench:begin -->\nfigures\n<!-- bench:end -->\n\n## Analysis\n",
		},
		{
			name: "a file without markers gets the block appended",
			old:  new("# B\n\nintro\n"),
			want: "# B\n\nintro\n\n<!-- bench:begin -->\nfigures\n<!-- bench:end -->\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "benchmarks.md")
			if tt.old != nil {
				if err := os.WriteFile(path, []byte(*tt.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := writeReport(path, "figures\n"); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}

// The h2c rows have a block of their own: a run of one suite rewrites its
// block and leaves the other's figures alone.
func TestWriteReportBlocksAreIndependent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	old := "# B\n\n<!-- bench:begin -->\nhttp v1\n<!-- bench:end -->\n\n## gRPC\n\n<!-- bench-h2c:begin -->\nh2c v1\n<!-- bench-h2c:end -->\n\nnotes\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeReportBlock(path, "bench-h2c", "h2c v2\n"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# B\n\n<!-- bench:begin -->\nhttp v1\n<!-- bench:end -->\n\n## gRPC\n\n<!-- bench-h2c:begin -->\nh2c v2\n<!-- bench-h2c:end -->\n\nnotes\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

// readProc parses /proc/<pid>/stat past the command name (which may hold
// spaces and parentheses) and /proc/<pid>/status; this process has used
// CPU and memory, so both must be non-zero.
func TestReadProcSelf(t *testing.T) {
	// Burn CPU until the kernel has charged this process a few clock ticks
	// (10 ms each), measured in CPU time rather than wall time: on a loaded
	// machine 50 ms of wall clock may include no time on a core at all.
	deadline := time.Now().Add(10 * time.Second)
	for cpuTime(t) < 50*time.Millisecond && time.Now().Before(deadline) {
	}
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.cpu <= 0 || s.hwmKB <= 0 || s.rssKB <= 0 || s.rssKB > s.hwmKB {
		t.Errorf("readProc(self) = %+v: want positive CPU and RSS ≤ peak RSS", s)
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
