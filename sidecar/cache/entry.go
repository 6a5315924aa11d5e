package cache

import (
	"encoding/binary"
	"errors"
	"net/http"
	"time"
)

// entry is one stored response with the metadata its freshness and its
// validity derive from.
type entry struct {
	Status int
	Header http.Header
	Body   []byte
	// RequestTime and ResponseTime bracket the exchange with the origin
	// that produced the entry or last validated it (RFC 9111 4.2.3).
	RequestTime, ResponseTime time.Time
	// InitialAge is the corrected initial age at ResponseTime.
	InitialAge time.Duration
	// Lifetime is the freshness lifetime: fresh while the age is below it.
	Lifetime time.Duration
	// SWR and SIE are the stale windows after Lifetime (0 when the
	// response may not be served stale).
	SWR, SIE time.Duration
	// Keep is the age up to which the entry is kept at all (fresh, stale
	// within a window, or as a base for revalidation).
	Keep time.Duration
	// NoCache: every use needs a successful validation. NoStale: never
	// served stale. SharedAuth: reusable for requests with Authorization.
	NoCache, NoStale, SharedAuth bool
	// Gen and Seq are the path's generation and its bucket's invalidation
	// sequence that the fill read before it fetched: an invalidation since
	// makes the entry invalid (see store.lookup).
	Gen, Seq int64
	// Tags are the tags of the rule that stored it.
	Tags []string
}

// age is the entry's current age (RFC 9111 4.2.3).
func (e *entry) age(now time.Time) time.Duration {
	return e.InitialAge + max(now.Sub(e.ResponseTime), 0)
}

// fresh reports whether the entry is fresh at now.
func (e *entry) fresh(now time.Time) bool { return e.age(now) < e.Lifetime }

// staleness is how far past its freshness lifetime the entry is at now.
func (e *entry) staleness(now time.Time) time.Duration { return e.age(now) - e.Lifetime }

// expiresIn is how long the entry may still be kept.
func (e *entry) expiresIn(now time.Time) time.Duration { return e.Keep - e.age(now) }

// hasValidators reports whether the entry can be revalidated with a
// conditional request.
func (e *entry) hasValidators() bool {
	return e.Header.Get("ETag") != "" || e.Header.Get("Last-Modified") != ""
}

// size approximates the memory the entry holds, for the in-process byte cap.
func (e *entry) size() int64 {
	n := int64(len(e.Body)) + 128
	for k, vs := range e.Header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v))
		}
	}
	return n
}

// entryVersion 2: RFC 9111 ages, validity stamps and tags. Entries of
// version 1 are read as misses and overwritten.
const entryVersion = 2

var errCorrupt = errors.New("corrupt cache entry")

// marshal encodes the entry compactly: a version byte, fixed-width numbers,
// length-prefixed tags, header names and values, then the body.
func (e *entry) marshal() []byte {
	b := make([]byte, 0, e.size()+96)
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(e.Status))
	b = binary.BigEndian.AppendUint64(b, uint64(e.RequestTime.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.ResponseTime.UnixMilli()))
	for _, d := range []time.Duration{e.InitialAge, e.Lifetime, e.SWR, e.SIE, e.Keep} {
		b = binary.BigEndian.AppendUint64(b, uint64(d.Milliseconds()))
	}
	var flags byte
	for i, f := range []bool{e.NoCache, e.NoStale, e.SharedAuth} {
		if f {
			flags |= 1 << i
		}
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Gen))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = binary.AppendUvarint(b, uint64(len(e.Tags)))
	for _, t := range e.Tags {
		b = appendString(b, t)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for k, vs := range e.Header {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return append(b, e.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func unmarshalEntry(b []byte) (*entry, error) {
	const fixed = 1 + 2 + 2*8 + 5*8 + 1 + 2*8
	if len(b) < fixed || b[0] != entryVersion {
		return nil, errCorrupt
	}
	e := &entry{Status: int(binary.BigEndian.Uint16(b[1:]))}
	e.RequestTime = time.UnixMilli(int64(binary.BigEndian.Uint64(b[3:])))
	e.ResponseTime = time.UnixMilli(int64(binary.BigEndian.Uint64(b[11:])))
	for i, d := range []*time.Duration{&e.InitialAge, &e.Lifetime, &e.SWR, &e.SIE, &e.Keep} {
		*d = time.Duration(binary.BigEndian.Uint64(b[19+8*i:])) * time.Millisecond
	}
	flags := b[59]
	e.NoCache, e.NoStale, e.SharedAuth = flags&1 != 0, flags&2 != 0, flags&4 != 0
	e.Gen = int64(binary.BigEndian.Uint64(b[60:]))
	e.Seq = int64(binary.BigEndian.Uint64(b[68:]))
	// Every shared-tier hit decodes an entry: the tags and header fields
	// are checked in a first pass, then taken from one string copy of
	// them (one allocation, not one per name and value) in a second, with
	// every value in one slice; the body stays a slice of b.
	check := fieldReader{b: b[fixed:]}
	n, ok := check.fields(nil, nil)
	if !ok {
		return nil, errCorrupt
	}
	end := check.off
	r := fieldReader{b: b[fixed:], s: string(b[fixed : fixed+end])}
	r.fields(e, make([]string, n))
	e.Body = b[fixed+end:]
	return e, nil
}

// fieldReader reads the length-prefixed tags and header fields of an
// encoded entry from b; strings are taken from s, a copy of b's start, or
// not at all while s is empty.
type fieldReader struct {
	b   []byte
	s   string
	off int
}

func (r *fieldReader) uvarint() (uint64, bool) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		return 0, false
	}
	r.off += n
	return v, true
}

func (r *fieldReader) str() (string, bool) {
	n, ok := r.uvarint()
	if !ok || n > uint64(len(r.b)-r.off) {
		return "", false
	}
	var v string
	if r.s != "" {
		v = r.s[r.off : r.off+int(n)]
	}
	r.off += int(n)
	return v, true
}

// fields reads the tags and the header fields into e (when not nil),
// their values into values, and returns how many values there are.
func (r *fieldReader) fields(e *entry, values []string) (int, bool) {
	n, ok := r.uvarint()
	if !ok || n > uint64(len(r.b)-r.off) {
		return 0, false
	}
	if e != nil && n > 0 {
		e.Tags = make([]string, n)
	}
	for i := range n {
		t, ok := r.str()
		if !ok {
			return 0, false
		}
		if e != nil {
			e.Tags[i] = t
		}
	}
	n, ok = r.uvarint()
	if !ok || n > uint64(len(r.b)-r.off) {
		return 0, false
	}
	if e != nil {
		e.Header = make(http.Header, n)
	}
	total := 0
	for range n {
		k, ok := r.str()
		if !ok {
			return 0, false
		}
		m, ok := r.uvarint()
		if !ok || m > uint64(len(r.b)-r.off) {
			return 0, false
		}
		vs := values[:0:0]
		if e != nil {
			vs = values[total : total : total+int(m)]
		}
		for range m {
			v, ok := r.str()
			if !ok {
				return 0, false
			}
			if e != nil {
				vs = append(vs, v)
			}
		}
		total += int(m)
		if e != nil {
			e.Header[k] = vs
		}
	}
	return total, true
}
