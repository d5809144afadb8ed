# IP allow-list: keys are used only from the company's networks.
#
# input.context.ip is the client's address, as keygate sees it: the TCP
# peer's, or the one X-Forwarded-For names when the peer is one of
# KEYGATE_TRUSTED_PROXIES. Answers then depend on the address, so keygate
# turns its decision cache off for this policy.
package keygate.authz

allowed_networks := [
	"10.0.0.0/8", # offices
	"192.0.2.0/24", # the build farm
	"2001:db8::/32",
]

deny contains sprintf("requests from %s are not allowed: keys are used only from the company's networks", [client_ip]) if {
	not from_allowed_network
}

# client_ip is never undefined, so a request without an address is denied
# with a reason too.
client_ip := object.get(input, ["context", "ip"], "an unknown address")

from_allowed_network if {
	some network in allowed_networks
	net.cidr_contains(network, input.context.ip)
}
