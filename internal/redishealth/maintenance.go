package redishealth

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Window is a weekly maintenance window in UTC.
type Window struct {
	// Days on which the window opens; empty means every day.
	Days []time.Weekday
	// Start is when it opens, as time since midnight UTC.
	Start time.Duration
	// Duration is how long it stays open (at most 24h).
	Duration time.Duration
}

// ParseStart parses "HH:MM" into time since midnight.
func ParseStart(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err == nil && len(s) != len("15:04") {
		err = errors.New("hours and minutes take two digits each")
	}
	if err != nil {
		return 0, fmt.Errorf("maintenance start %q: want HH:MM: %w", s, err)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

func (w Window) opensOn(d time.Weekday) bool { return len(w.Days) == 0 || slices.Contains(w.Days, d) }

// OpenedAt returns when the occurrence of the window that contains now
// opened; ok is false when the window is closed at now. An occurrence may
// run past midnight (start 23:00, 2h), so yesterday's opening counts too.
func (w Window) OpenedAt(now time.Time) (opened time.Time, ok bool) {
	now = now.UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	for _, day := range []time.Time{midnight, midnight.AddDate(0, 0, -1)} {
		start := day.Add(w.Start)
		if w.opensOn(day.Weekday()) && !now.Before(start) && now.Before(start.Add(w.Duration)) {
			return start, true
		}
	}
	return time.Time{}, false
}

// NextOpen returns the first opening of the window after now.
func (w Window) NextOpen(now time.Time) time.Time {
	now = now.UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	for i := range 8 {
		day := midnight.AddDate(0, 0, i)
		if start := day.Add(w.Start); w.opensOn(day.Weekday()) && start.After(now) {
			return start
		}
	}
	return time.Time{} // unreachable: every weekday recurs within 8 days
}

// RestartCandidates names the nodes to restart in the window occurrence
// that opened at opened: those fragmented beyond ratio (and minBytes) whose
// process started before the window opened. The second rule makes each
// node restart at most once per occurrence, with no memory of what was
// done: a restarted process has a fresh uptime. Sorted by name.
func RestartCandidates(nodes []Node, ratio float64, minBytes int64, opened, now time.Time) []string {
	var out []string
	for _, n := range nodes {
		if meaningfullyFragmented(n, ratio, minBytes) && started(n, now).Before(opened) {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// started is when a node's process started: by its own clock
// (redisinfo.Server.Started), else now less its uptime. The former does not
// count the time the answer took to reach the operator as uptime, which on
// a busy machine can be seconds and make a process restarted just after
// the window opened look older than the window.
func started(n Node, now time.Time) time.Time {
	if t := n.Info.Server.Started(); !t.IsZero() {
		return t
	}
	return now.Add(-time.Duration(n.Info.Server.UptimeSeconds) * time.Second)
}
