package authz

import (
	"context"
	"time"
)

// overBudget refuses a token presented from an address that has spent its
// failed-authentication budget, before the token costs a lookup: unless it
// is the token of a key the cache holds as live, so a tenant's working
// service behind the same address as an attacker keeps working.
func (s *KeyService) overBudget(ctx context.Context, now time.Time, token string) error {
	addr := RequestInfoFromContext(ctx).IP
	wait := s.Limiter.Over(addr)
	if wait == 0 {
		return nil
	}
	if holder, ok := s.Lookup.(LiveKeyHolder); ok && ValidTokenFormat(token) && holder.HoldsLiveKey(HashToken(token), now) {
		return nil
	}
	return s.Limiter.Refuse(ctx, addr, CredentialAPIKey, wait)
}
