# benchmarks/policies/twenty-nowindow.yaml in Rego (rego.v1). `result` is the gatekit decision and the
# matched rule ids (shadow rules included). Numeric strings compare as numbers (`to_number`); a string
# that is not a number leaves the rule unmatched where gatekit errors (escalates): no such value in the
# benchmark data. `hour` and `weekday` are the call's local time in Europe/Berlin, computed when the input
# is built. Tool globs are prefix globs here, written with startswith. Excluded: the window rules (a
# stateless query): this is the policy without windows.
package gatekit

import rego.v1

num(x) := x if is_number(x)

num(x) := to_number(trim(x, " \t\n\r")) if is_string(x)

matched contains "pay-100" if { input.tool == "payment.send"; num(input.args.amount) > 100 }
matched contains "pay-10k" if { input.tool == "payment.send"; num(input.args.amount) >= 10000 }
matched contains "pay-blocked" if { input.tool == "payment.send"; input.args.recipient in {"mallory", "eve-corp"} }
matched contains "refund-big" if { input.tool == "payment.refund"; num(input.args.amount) > 500 }
matched contains "prod-delete" if { input.tool == "db.delete"; input.context.env == "prod" }
matched contains "prod-delete" if { startswith(input.tool, "db.drop_"); input.context.env == "prod" }
matched contains "prod-update" if { input.tool == "db.update"; input.context.env == "prod"; num(input.args.rows_affected) > 1000 }
matched contains "export-ext" if {
	input.tool == "data.export"
	is_string(input.args.destination)
	regex.match(`^(s3|https?)://(?:[^/]*\.)?(?:external|partner)`, input.args.destination)
}
matched contains "export-big" if { input.tool == "data.export"; num(input.args.rows) > 100000 }
matched contains "iam-admin" if { startswith(input.tool, "infra.iam."); endswith(input.args.role, "admin") }
matched contains "iam-any" if startswith(input.tool, "infra.iam.")
matched contains "scale-big" if { input.tool == "infra.scale"; num(input.args.replicas) > 50 }
matched contains "deploy-prod" if { startswith(input.tool, "deploy."); input.context.env == "prod" }
matched contains "deploy-weekend" if { startswith(input.tool, "deploy."); input.weekday in {"sat", "sun"} }
matched contains "after-hours-pay" if { startswith(input.tool, "payment."); input.hour < 7 }
matched contains "after-hours-pay" if { startswith(input.tool, "payment."); input.hour >= 20 }
matched contains "campaign-big" if { input.tool == "email.campaign.send"; num(input.args.recipients) > 5000 }
matched contains "email-external" if {
	input.tool == "email.send"
	contains(input.args.to, "@")
	not endswith(input.args.to, "@example.com")
}
matched contains "email-burst" if { input.tool == "email.send"; num(input.args.recipients) > 20 }
matched contains "pay-volume" if { input.tool == "payment.send"; num(input.args.amount) > 50000 }
matched contains "secrets-read" if { startswith(input.tool, "vault."); startswith(input.args.path, "secret/prod") }
matched contains "unknown-prod-tool" if {
	input.context.env == "prod"
	not input.tool in {"db.query", "crm.lookup", "docs.search"}
}

deny_rules := {"pay-blocked", "prod-delete", "iam-admin", "secrets-read"}

shadow_rules := {"deploy-weekend", "unknown-prod-tool"}

decision := "deny" if {
	count(matched & deny_rules) > 0
} else := "escalate" if {
	count((matched - deny_rules) - shadow_rules) > 0
} else := "allow"

result := {"decision": decision, "rules": matched}
