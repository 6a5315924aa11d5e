package redishealth

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestWindow(t *testing.T) {
	// 2026-12-05 is a Saturday.
	sat2am := Window{Days: []time.Weekday{time.Saturday}, Start: 2 * time.Hour, Duration: 2 * time.Hour}
	lateNight := Window{Start: 23 * time.Hour, Duration: 2 * time.Hour} // every day, across midnight
	sunLate := Window{Days: []time.Weekday{time.Sunday}, Start: 23 * time.Hour, Duration: 3 * time.Hour}
	tests := []struct {
		name       string
		w          Window
		now        string
		wantOpen   bool
		wantOpened string
		wantNext   string
	}{
		{"before it opens", sat2am, "2026-12-05T01:59:59Z", false, "", "2026-12-05T02:00:00Z"},
		{"as it opens", sat2am, "2026-12-05T02:00:00Z", true, "2026-12-05T02:00:00Z", "2026-12-12T02:00:00Z"},
		{"inside", sat2am, "2026-12-05T03:30:00Z", true, "2026-12-05T02:00:00Z", "2026-12-12T02:00:00Z"},
		{"as it closes", sat2am, "2026-12-05T04:00:00Z", false, "", "2026-12-12T02:00:00Z"},
		{"another day", sat2am, "2026-12-06T03:00:00Z", false, "", "2026-12-12T02:00:00Z"},
		{"times are UTC whatever the zone", sat2am, "2026-12-05T04:30:00+01:00", true, "2026-12-05T02:00:00Z", "2026-12-12T02:00:00Z"},
		{"past midnight: yesterday's occurrence", lateNight, "2026-12-06T00:30:00Z", true, "2026-12-05T23:00:00Z", "2026-12-06T23:00:00Z"},
		{"past midnight: closed after", lateNight, "2026-12-06T01:00:00Z", false, "", "2026-12-06T23:00:00Z"},
		{"the opening day counts, not the day it runs into", sunLate, "2026-12-07T01:00:00Z", true, "2026-12-06T23:00:00Z", "2026-12-13T23:00:00Z"},
		{"the day after the opening day does not open", sunLate, "2026-12-07T23:30:00Z", false, "", "2026-12-13T23:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := at(tt.now)
			opened, open := tt.w.OpenedAt(now)
			if open != tt.wantOpen {
				t.Fatalf("OpenedAt(%s) open = %v, want %v", tt.now, open, tt.wantOpen)
			}
			if open && !opened.Equal(at(tt.wantOpened)) {
				t.Errorf("opened %s, want %s", opened, tt.wantOpened)
			}
			if next := tt.w.NextOpen(now); !next.Equal(at(tt.wantNext)) {
				t.Errorf("NextOpen(%s) = %s, want %s", tt.now, next, tt.wantNext)
			}
		})
	}
}

func TestParseStart(t *testing.T) {
	for in, want := range map[string]time.Duration{"00:00": 0, "02:30": 2*time.Hour + 30*time.Minute, "23:59": 23*time.Hour + 59*time.Minute} {
		got, err := ParseStart(in)
		if err != nil || got != want {
			t.Errorf("ParseStart(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"24:00", "2:30", "02:60", "noon", ""} {
		if _, err := ParseStart(bad); err == nil {
			t.Errorf("ParseStart(%q) succeeded", bad)
		}
	}
}

func TestRestartCandidates(t *testing.T) {
	opened := at("2026-12-05T02:00:00Z")
	now := opened.Add(30 * time.Minute)
	node := func(name string, ratio float64, lost, uptime int64) Node {
		n := primary(name, 0, fragmented(ratio, lost))
		n.Info.Server.UptimeSeconds = uptime
		return n
	}
	const day = 86400
	nodes := []Node{
		node("c-fragmented", 2.4, 3<<30, day),
		node("a-fragmented", 2.1, 500<<20, day),
		node("b-healthy", 1.3, 200<<20, day),
		node("d-small", 9, 10<<20, day),                  // ratio meaningless: little memory
		node("e-restarted-in-window", 2.5, 1<<30, 20*60), // started 10 minutes after opening
		node("f-started-just-before", 2.5, 1<<30, 31*60),
		down,
	}
	got := RestartCandidates(nodes, 2, 100<<20, opened, now)
	want := []string{"a-fragmented", "c-fragmented", "f-started-just-before"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RestartCandidates (-want +got):\n%s", diff)
	}
	// Restarted 2s after the window opened, it answered at +20s with 18s of
	// uptime; the reconcile that asked began at +15s. Against the
	// reconcile's clock it would look 3s older than the window and be
	// restarted again (the envtest saw exactly that on a loaded machine);
	// by its own clock it is not.
	late := node("g-answered-late", 2.5, 1<<30, 18)
	late.Info.Server.TimeMicros = opened.Add(20 * time.Second).UnixMicro()
	if got := RestartCandidates([]Node{late}, 2, 100<<20, opened, opened.Add(15*time.Second)); len(got) != 0 {
		t.Errorf("a node restarted in the window is a candidate again: %v", got)
	}
	late.Info.Server.TimeMicros = 0 // without server_time_usec: the reconcile's clock
	if got := RestartCandidates([]Node{late}, 2, 100<<20, opened, opened.Add(15*time.Second)); len(got) != 1 {
		t.Errorf("the fallback to uptime against now: %v", got)
	}

	// The threshold a test lowers to force restarts: every node with any
	// fragmentation qualifies, still once per window.
	got = RestartCandidates(nodes, 1, 0, opened, now)
	want = []string{"a-fragmented", "b-healthy", "c-fragmented", "d-small", "f-started-just-before"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RestartCandidates lowered (-want +got):\n%s", diff)
	}
}
