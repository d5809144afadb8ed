package authz

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"hash/crc32"
	"io"
	"math/big"
)

// Token layout: "pk_" + 43 base62 characters of 32 random bytes + 6 base62
// characters of the CRC32 of everything before them. The checksum lets a
// mistyped or made-up token be refused before any lookup.
const (
	TokenPrefix      = "pk_"
	tokenBodyLen     = 43 // ceil(256 / log2(62))
	tokenChecksumLen = 6  // ceil(32 / log2(62))
	TokenLen         = len(TokenPrefix) + tokenBodyLen + tokenChecksumLen
	TokenStartLen    = 8 // characters kept for display
	base62Alphabet   = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// NewToken returns a fresh token read from r (crypto/rand when r is nil).
func NewToken(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var raw [32]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return "", Errorf(EINTERNAL, "read random bytes: %v", err)
	}
	body := TokenPrefix + base62(new(big.Int).SetBytes(raw[:]), tokenBodyLen)
	return body + tokenChecksum(body), nil
}

// ValidTokenFormat reports whether s has the shape of a keygate token and a
// correct checksum. It does not say whether the key exists.
func ValidTokenFormat(s string) bool {
	if len(s) != TokenLen || s[:len(TokenPrefix)] != TokenPrefix {
		return false
	}
	for i := len(TokenPrefix); i < len(s); i++ {
		if !isBase62(s[i]) {
			return false
		}
	}
	split := TokenLen - tokenChecksumLen
	return subtle.ConstantTimeCompare([]byte(tokenChecksum(s[:split])), []byte(s[split:])) == 1
}

// HashToken returns the hex SHA-256 of a token, the only form stored.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenStart returns the display prefix of a token.
func TokenStart(token string) string {
	if len(token) < TokenStartLen {
		return token
	}
	return token[:TokenStartLen]
}

// EqualHashes compares two token hashes in constant time.
func EqualHashes(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// tokenChecksum is the CRC-32 of s in base62, checked on every request, so
// in machine words rather than big.Int (a CRC-32 fits tokenChecksumLen
// digits).
func tokenChecksum(s string) string {
	n := crc32.ChecksumIEEE([]byte(s))
	var out [tokenChecksumLen]byte
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = base62Alphabet[n%62]
		n /= 62
	}
	return string(out[:])
}

// base62 encodes n in exactly width characters, left-padded with '0'.
func base62(n *big.Int, width int) string {
	out := make([]byte, width)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62Alphabet[mod.Int64()]
	}
	return string(out)
}

func isBase62(c byte) bool {
	return ('0' <= c && c <= '9') || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')
}
