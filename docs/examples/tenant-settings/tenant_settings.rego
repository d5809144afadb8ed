# Tenant settings: a tenant's compliance team switches actions off for all
# of the tenant's keys, in a data document beside the rules.
#
# tenant_settings/data.json is loaded as data.tenant_settings (a data file's
# path is its folder's). Change the file and the folder reloads; ship it in
# a bundle and every instance polls it. Data may not go under data.keygate
# or data.system, which keygate keeps for rules.
#
# A deny element {"check": c, "reason": …} denies only check c, so a batch
# keeps its other answers. (Rules about the key itself read its metadata,
# input.principal.meta: see the plan-tier example.)
package keygate.authz

deny contains {"check": c, "reason": sprintf("tenant %q has switched %s on %s off", [tenant, c.action, c.resource.type])} if {
	tenant := input.principal.tenant_id
	some c in checks
	c.action in data.tenant_settings[tenant].disabled_actions[c.resource.type]
}
