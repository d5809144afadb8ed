# Plan tiers: a key's meta names the plan its owner pays for; a key on the
# free plan reads vector stores but does not query or write them.
#
# meta is the JSON object the platform keeps with each key (`meta` on create
# and PATCH), given to the policy as input.principal.meta. A key whose meta
# names no plan is on the free plan. meta is part of the principal, so
# keygate keeps caching answers for this policy.
#
# A deny element {"check": c, "reason": …} denies only check c (see
# policies/authz.rego), so in a batch a free key keeps its reads; the key's
# scope still decides everything else.
package keygate.authz

# paid_plan_actions are the actions on vector stores the free plan lacks.
paid_plan_actions := {"query", "write"}

deny contains {"check": c, "reason": sprintf("%s %q needs a paid plan for %s; this key's plan is %q", [c.resource.type, c.resource.id, c.action, plan])} if {
	plan := object.get(input.principal, ["meta", "plan"], "free")
	plan == "free"
	some c in checks
	c.resource.type == "vector_store"
	c.action in paid_plan_actions
}
