package cache

import (
	"encoding/binary"
	"errors"
	"net/http"
	"time"
)

// entry is one stored response with the timestamps its freshness derives from.
type entry struct {
	Status int
	Header http.Header
	Body   []byte
	// StoredAt is when the response was received from the upstream.
	StoredAt time.Time
	// InitialAge is the upstream's Age when it was received.
	InitialAge time.Duration
	// Lifetime is the freshness lifetime; the entry is fresh while its age is below it.
	Lifetime time.Duration
	// SWR and SIE are the stale windows after Lifetime (0 when must-revalidate).
	SWR, SIE time.Duration
}

// age is the entry's current age (RFC 9111 4.2.3, with the sidecar's own
// clock as both request and response time).
func (e *entry) age(now time.Time) time.Duration {
	return e.InitialAge + max(now.Sub(e.StoredAt), 0)
}

// expiresIn is how long the entry may still be used at all, fresh or stale.
func (e *entry) expiresIn(now time.Time) time.Duration {
	return e.Lifetime + max(e.SWR, e.SIE) - e.age(now)
}

// size approximates the memory the entry holds, for the in-process byte cap.
func (e *entry) size() int64 {
	n := int64(len(e.Body)) + 64
	for k, vs := range e.Header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v))
		}
	}
	return n
}

const entryVersion = 1

var errCorrupt = errors.New("corrupt cache entry")

// marshal encodes the entry compactly: a version byte, fixed-width numbers,
// length-prefixed header names and values, then the body.
func (e *entry) marshal() []byte {
	b := make([]byte, 0, e.size()+64)
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(e.Status))
	b = binary.BigEndian.AppendUint64(b, uint64(e.StoredAt.UnixMilli()))
	for _, d := range []time.Duration{e.InitialAge, e.Lifetime, e.SWR, e.SIE} {
		b = binary.BigEndian.AppendUint64(b, uint64(d.Milliseconds()))
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
	const fixed = 1 + 2 + 8 + 4*8
	if len(b) < fixed || b[0] != entryVersion {
		return nil, errCorrupt
	}
	e := &entry{Status: int(binary.BigEndian.Uint16(b[1:]))}
	e.StoredAt = time.UnixMilli(int64(binary.BigEndian.Uint64(b[3:])))
	ds := []*time.Duration{&e.InitialAge, &e.Lifetime, &e.SWR, &e.SIE}
	for i, d := range ds {
		*d = time.Duration(binary.BigEndian.Uint64(b[11+8*i:])) * time.Millisecond
	}
	r := b[fixed:]
	n, ok := readUvarint(&r)
	if !ok || n > uint64(len(r)) {
		return nil, errCorrupt
	}
	e.Header = make(http.Header, n)
	for range n {
		k, ok := readString(&r)
		if !ok {
			return nil, errCorrupt
		}
		m, ok := readUvarint(&r)
		if !ok || m > uint64(len(r)) {
			return nil, errCorrupt
		}
		vs := make([]string, 0, m)
		for range m {
			v, ok := readString(&r)
			if !ok {
				return nil, errCorrupt
			}
			vs = append(vs, v)
		}
		e.Header[k] = vs
	}
	e.Body = r
	return e, nil
}

func readUvarint(r *[]byte) (uint64, bool) {
	v, n := binary.Uvarint(*r)
	if n <= 0 {
		return 0, false
	}
	*r = (*r)[n:]
	return v, true
}

func readString(r *[]byte) (string, bool) {
	n, ok := readUvarint(r)
	if !ok || n > uint64(len(*r)) {
		return "", false
	}
	s := string((*r)[:n])
	*r = (*r)[n:]
	return s, true
}
