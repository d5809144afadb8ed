# Package keygate.examples.plan_tier shows a rule over a key's meta, the
# JSON object the platform keeps with each key (input.principal.meta): a
# plan tier. Keys whose meta.plan is "free" may read vector stores but not
# query or write them; every other answer is the shipped policy's.
#
# keygate asks data.keygate.authz.decision. To serve this rule, copy the
# policies into a folder of your own (KEYGATE_POLICY_DIR) and add
# tier_denials to the deny conditions of authz.rego's check, as decision
# below does around the shipped one. meta is part of the principal, so the
# decision cache still holds answers that depend on it.
package keygate.examples.plan_tier

import data.keygate.authz

# paid_actions are the actions on vector stores a free plan does not have.
paid_actions := {"query", "write"}

decision := {"allow": false, "reasons": sort(tier_denials)} if {
	count(tier_denials) > 0
} else := authz.decision

tier_denials contains sprintf("%s %q needs a paid plan for %s; this key's plan is %q", [input.resource.type, input.resource.id, input.action, plan]) if {
	input.resource.type == "vector_store"
	input.action in paid_actions
	plan := object.get(input.principal, ["meta", "plan"], "free")
	plan == "free"
}
