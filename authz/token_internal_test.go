package authz

import (
	"fmt"
	"hash/crc32"
	"math/big"
	"testing"
)

// The checksum in machine words must spell what base62 of the CRC as a
// big.Int spells, or every token minted before would stop validating.
func TestTokenChecksumMatchesBigIntBase62(t *testing.T) {
	t.Parallel()
	for i := range 10_000 {
		s := fmt.Sprintf("pk_%d", i)
		want := base62(new(big.Int).SetUint64(uint64(crc32.ChecksumIEEE([]byte(s)))), tokenChecksumLen)
		if got := tokenChecksum(s); got != want {
			t.Fatalf("checksum of %q: %s, want %s", s, got, want)
		}
	}
	if got, want := base62(new(big.Int).SetUint64(1<<32-1), tokenChecksumLen), "4gfFC3"; got != want {
		t.Fatalf("the largest CRC-32 spells %s, want %s", got, want)
	}
}
