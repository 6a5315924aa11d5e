package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Token layout: "gh2." + base64url(id, 16 bytes) + "." + base64url(secret, 32 bytes).
//
// The id locates the session (its SHA-256 names the Redis key); the secret
// never leaves the token and is the only way to decrypt the stored payload.
// The first two bytes of a gh2 id are the subject's bucket (14 bits, see
// bucketOf), which names the hash slot all sessions of the subject and its
// index share; the other 14 bytes are random. The secret is random, so a
// token cannot be guessed and Redis alone cannot produce one.
//
// gh1 tokens, issued before, have a fully random id and their sessions are
// spread over slots (see Manager.legacyKey); they are still accepted until
// they expire, but no longer issued.
const (
	tokenPrefix   = "gh2."
	tokenPrefixV1 = "gh1."
	idLen         = 16
	secretLen     = 32
	idB64Len      = 22 // base64.RawURLEncoding.EncodedLen(idLen)
	secretB64     = 43 // base64.RawURLEncoding.EncodedLen(secretLen)
	// TokenLen is the exact length of every token, of either version.
	TokenLen = len(tokenPrefix) + idB64Len + 1 + secretB64
	// buckets is how many buckets subjects fall into: one per cluster slot.
	buckets = 1 << 14
)

// b64 rejects non-canonical encodings (stray low bits in the last
// character), so one token has exactly one spelling.
var b64 = base64.RawURLEncoding.Strict()

// errMalformed means the string cannot be a token of this version.
var errMalformed = errors.New("malformed session token")

// token is a parsed session token.
type token struct {
	// legacy marks a gh1 token.
	legacy bool
	id     [idLen]byte
	secret [secretLen]byte
}

// newToken draws a fresh random token in bucket.
func newToken(bucket uint16) (token, error) {
	var t token
	if _, err := io.ReadFull(rand.Reader, t.id[2:]); err != nil {
		return token{}, fmt.Errorf("read random id: %w", err)
	}
	binary.BigEndian.PutUint16(t.id[:2], bucket%buckets)
	if _, err := io.ReadFull(rand.Reader, t.secret[:]); err != nil {
		return token{}, fmt.Errorf("read random secret: %w", err)
	}
	return t, nil
}

// bucket is the subject bucket a gh2 token carries.
func (t token) bucket() uint16 { return binary.BigEndian.Uint16(t.id[:2]) }

// String renders the token as issued to clients.
func (t token) String() string {
	b := make([]byte, TokenLen)
	prefix := tokenPrefix
	if t.legacy {
		prefix = tokenPrefixV1
	}
	n := copy(b, prefix)
	b64.Encode(b[n:], t.id[:])
	n += idB64Len
	b[n] = '.'
	b64.Encode(b[n+1:], t.secret[:])
	return string(b)
}

// parseToken accepts exactly the strings String produces. Everything is
// checked before any decoding work, so garbage is cheap to reject.
func parseToken(s string) (token, error) {
	var t token
	if len(s) != TokenLen || s[len(tokenPrefix)+idB64Len] != '.' {
		return token{}, errMalformed
	}
	switch s[:len(tokenPrefix)] {
	case tokenPrefix:
	case tokenPrefixV1:
		t.legacy = true
	default:
		return token{}, errMalformed
	}
	idPart := s[len(tokenPrefix) : len(tokenPrefix)+idB64Len]
	secretPart := s[len(tokenPrefix)+idB64Len+1:]
	// Decode into stack buffers sized for the encoded length; Strict rejects
	// padding, newlines and non-canonical trailing bits.
	if n, err := b64.Decode(t.id[:], []byte(idPart)); err != nil || n != idLen {
		return token{}, errMalformed
	}
	if !t.legacy && t.bucket() >= buckets {
		return token{}, errMalformed
	}
	if n, err := b64.Decode(t.secret[:], []byte(secretPart)); err != nil || n != secretLen {
		return token{}, errMalformed
	}
	return t, nil
}

// idHash names the session in Redis. The id holds at least 112 random
// bits, so a plain hash cannot be reversed by guessing; the label keeps this hash apart from
// any other use of SHA-256 over the same bytes.
func (t token) idHash() string {
	sum := sha256.Sum256(append([]byte(idHashLabel), t.id[:]...))
	return b64.EncodeToString(sum[:])
}

const idHashLabel = "gatehouse session id v1\x00"

// payloadVersion is the first byte of every stored value.
const payloadVersion = 1

// aead derives the payload cipher from the token's secret. The id salts the
// derivation so two sessions never share a key even if a secret repeated.
func (t token) aead() (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, t.secret[:], t.id[:], "gatehouse session payload v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive payload key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("payload cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

// seal encrypts plaintext for the Redis key redisKey. The key name is the
// additional data, so a value copied under another key does not decrypt.
func (t token) seal(redisKey string, plaintext []byte) ([]byte, error) {
	a, err := t.aead()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+a.NonceSize(), 1+a.NonceSize()+len(plaintext)+a.Overhead())
	out[0] = payloadVersion
	if _, err := io.ReadFull(rand.Reader, out[1:]); err != nil {
		return nil, fmt.Errorf("read nonce: %w", err)
	}
	return a.Seal(out, out[1:], plaintext, []byte(redisKey)), nil
}

// errUndecryptable means a stored value does not belong to this token.
var errUndecryptable = errors.New("session payload does not decrypt with this token")

// open reverses seal.
func (t token) open(redisKey string, value []byte) ([]byte, error) {
	a, err := t.aead()
	if err != nil {
		return nil, err
	}
	if len(value) < 1+a.NonceSize()+a.Overhead() || value[0] != payloadVersion {
		return nil, errUndecryptable
	}
	nonce, ct := value[1:1+a.NonceSize()], value[1+a.NonceSize():]
	pt, err := a.Open(ct[:0:0], nonce, ct, []byte(redisKey))
	if err != nil {
		return nil, errUndecryptable
	}
	return pt, nil
}
