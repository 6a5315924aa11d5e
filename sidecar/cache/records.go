package cache

import (
	"slices"
	"strconv"
	"strings"
)

// records are one bucket's copy of the policy's prefix and tag
// invalidations (invalidate.lua writes them): each field names what it
// invalidates, each value the sequence number it was recorded under. An
// entry is invalid when a record newer than the sequence its fill read
// covers its path or one of its tags.
type records struct {
	seq   int64
	items []record
}

type record struct {
	// field is "p:<prefix>", "t:<tag>" or "*" (everything).
	field string
	seq   int64
}

func parseRecords(m map[string]string) *records {
	rs := &records{}
	rs.seq, _ = strconv.ParseInt(m["seq"], 10, 64)
	for field, v := range m {
		if field == "seq" {
			continue
		}
		s, _, _ := strings.Cut(v, ":")
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			// Unreadable: it invalidates everything, never nothing.
			n = rs.seq
			field = "*"
		}
		rs.items = append(rs.items, record{field: field, seq: n})
	}
	return rs
}

// invalidates reports whether e, stored for path, is invalidated. An entry
// that read a sequence newer than the bucket's (the bucket's state was
// lost: evicted under memory pressure, or a failover lost the write) is
// invalid too: its invalidations may be what was lost.
func (rs *records) invalidates(e *entry, path string) bool {
	if e.Seq > rs.seq {
		return true
	}
	for _, r := range rs.items {
		if r.seq > e.Seq && r.covers(path, e.Tags) {
			return true
		}
	}
	return false
}

func (r record) covers(path string, tags []string) bool {
	switch {
	case r.field == "*":
		return true
	case strings.HasPrefix(r.field, "p:"):
		return strings.HasPrefix(path, r.field[2:])
	case strings.HasPrefix(r.field, "t:"):
		return slices.Contains(tags, r.field[2:])
	}
	return false
}
