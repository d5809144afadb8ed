# Package system.log masks keygate's decision logs, in OPA's convention:
# before an event is written, keygate evaluates mask with the event as
# input (input.input is what the policy was asked, input.result its answer,
# input.custom keygate's source and code). Each element is a JSON pointer
# under /input or /result to remove, or {"op": "upsert", "path": …,
# "value": …} to replace what is there.
#
# The input of a decision never holds an API key's token or its hash, only
# the key's id, so nothing has to be removed for that: keygate never puts a
# credential into the input.
package system.log

# A key's metadata (input.principal.meta) is text its owner chose and may
# hold anything, so it stays out of decision logs.
mask contains "/input/principal/meta" if {
	input.input.principal.meta
}
