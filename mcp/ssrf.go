package mcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/authz"
)

// AllowedNetworksSetting names the setting that lets upstreams reach
// addresses keygate otherwise refuses.
const AllowedNetworksSetting = "KEYGATE_MCP_ALLOWED_NETWORKS"

// ErrBlockedAddress is the dial error for an upstream address that is not
// public and not in the allowed networks.
var ErrBlockedAddress = errors.New("destination address not allowed")

// blockedPrefixes are the ranges refused beyond what netip's predicates
// catch: this network, CGNAT, IETF protocol assignments, benchmarking,
// reserved, IPv4-compatible IPv6, NAT64 and 6to4 (both embed an IPv4
// address) and the old site-local range.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("fec0::/10"),
}

// AddressAllowed reports whether an upstream may be dialled at ip: a public
// unicast address, or any address inside allow. IPv4-mapped IPv6 addresses
// are judged as the IPv4 address they carry.
func AddressAllowed(ip netip.Addr, allow []netip.Prefix) bool {
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || !ip.IsGlobalUnicast() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// ParseNetworks reads a comma-separated list of CIDRs (a bare address is
// one host), as KEYGATE_MCP_ALLOWED_NETWORKS holds it. An IPv4-mapped IPv6
// prefix is stored as the IPv4 prefix it covers.
func ParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%s: %q is not a CIDR such as 10.0.0.0/8 or fd00::/8", AllowedNetworksSetting, f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// guardedDialer checks every address it connects to, after DNS resolution
// (so a name that resolves to a private address, or rebinds to one between
// two lookups, is refused on the address actually dialled).
func guardedDialer(allow []netip.Prefix) *net.Dialer {
	return &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %q", ErrBlockedAddress, address)
			}
			if !AddressAllowed(ap.Addr(), allow) {
				return fmt.Errorf("%w: %s", ErrBlockedAddress, ap.Addr().Unmap())
			}
			return nil
		},
	}
}

// CheckMCPURL implements authz.MCPAddressChecker: a URL whose host is, or
// resolves only to, addresses the dial guard would refuse is refused when
// it is saved, with the setting to change. The dial guard stays what
// enforces it: a name may resolve elsewhere later.
func (g *Gateway) CheckMCPURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return nil // the service's own validation names it
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil // an unknown name is the sync's "unreachable", not a refusal
		}
	}
	for _, a := range addrs {
		if !AddressAllowed(a, g.opts.AllowedNetworks) {
			return authz.Invalid(authz.FieldError{Field: "url", Message: fmt.Sprintf(
				"the host is or resolves to a loopback, private, link-local or otherwise non-public address, which upstreams may not use unless %s allows it", AllowedNetworksSetting)})
		}
	}
	return nil
}
