{{/*
The server's --config file (TOML), from `iam` and the gateway's tables. Every string goes
through toJson, whose escapes TOML's basic strings share; documents are JSON text in a string.
Files are the paths the server's pod mounts them at (server.yaml).
*/}}
{{- define "keyless.config" -}}
{{- include "keyless.validate" . }}
{{- $root := . -}}
# Rendered by the keyless chart from its `iam` values; applied at every start.
{{- range .Values.iam.policies }}

[[policies]]
name = {{ .name | toJson }}
document = {{ .document | toJson | toJson }}
{{- end }}
{{- if and .Values.server.enabled .Values.agent.enabled }}

# The node agent: it assumes the pods' roles (roles with `trust.agent`).
[[users]]
name = {{ include "keyless.agentUser" . | toJson }}
credentials_file = "/etc/keyless/secrets/agent-credentials"
{{- end }}
{{- range .Values.iam.users }}

[[users]]
name = {{ .name | toJson }}
{{- with .path }}
path = {{ . | toJson }}
{{- end }}
{{- with .accessKeyId }}
access_key_id = {{ . | toJson }}
{{- end }}
{{- with .secretAccessKeySecret }}
secret_access_key_file = {{ printf "/etc/keyless/users/%s/%s" .name .key | toJson }}
{{- end }}
{{- with .policyArns }}
policy_arns = {{ . | toJson }}
{{- end }}
{{- range .policies }}

[[users.policies]]
name = {{ .name | toJson }}
document = {{ .document | toJson | toJson }}
{{- end }}
{{- end }}
{{- if .Values.iam.clusterIssuer.enabled }}

# The cluster's service-account issuer: IRSA tokens from the kubelet.
[[oidc_providers]]
url = {{ .Values.iam.clusterIssuer.url | toJson }}
client_ids = {{ .Values.iam.clusterIssuer.audiences | toJson }}
{{- if .Values.iam.clusterIssuer.jwks }}
jwks_file = "cluster-issuer.jwks.json"
{{- else if include "keyless.fetchClusterIssuer" . }}
# Its keys fetched from the API server, with this pod's token and the cluster's CA.
ca_bundle_file = "/var/run/secrets/keyless/cluster-issuer/ca.crt"
token_file = "/var/run/secrets/keyless/cluster-issuer/token"
{{- end }}
{{- end }}
{{- range $i, $p := .Values.iam.oidcProviders }}

[[oidc_providers]]
url = {{ $p.url | toJson }}
{{- with $p.clientIds }}
client_ids = {{ . | toJson }}
{{- end }}
{{- with $p.thumbprints }}
thumbprints = {{ . | toJson }}
{{- end }}
{{- if $p.jwks }}
jwks_file = {{ printf "oidc-provider-%d.jwks.json" $i | toJson }}
{{- end }}
{{- end }}
{{- range .Values.iam.roles }}

[[roles]]
name = {{ .name | toJson }}
{{- with .path }}
path = {{ . | toJson }}
{{- end }}
{{- with .description }}
description = {{ . | toJson }}
{{- end }}
{{- with .maxSessionDuration }}
max_session_duration = {{ . }}
{{- end }}
assume_role_policy = { document = {{ include "keyless.trustPolicy" (list $root .) | toJson }} }
{{- with .policyArns }}
policy_arns = {{ . | toJson }}
{{- end }}
{{- range .policies }}

[[roles.policies]]
name = {{ .name | toJson }}
document = {{ .document | toJson | toJson }}
{{- end }}
{{- end }}
{{- range .Values.iam.buckets }}

[[buckets]]
name = {{ .name | toJson }}
{{- with .policy }}
policy = { document = {{ . | toJson | toJson }} }
{{- end }}
{{- end }}
{{- end }}

{{/*
A role's trust policy, as JSON: `assumeRolePolicy` as given, or the statements `trust` asks for:
the cluster issuer's tokens for each `NAMESPACE/NAME` service account (IRSA, as eksctl writes
them), and the node agent's user.
*/}}
{{- define "keyless.trustPolicy" -}}
{{- $root := index . 0 }}{{- $role := index . 1 -}}
{{- if $role.assumeRolePolicy }}
{{- $role.assumeRolePolicy | toJson }}
{{- else }}
{{- $statements := list }}
{{- $host := include "keyless.clusterIssuerHost" $root }}
{{- $trust := $role.trust | default dict }}
{{- with $trust.serviceAccounts }}
{{- $subjects := list }}
{{- range . }}
{{- $parts := splitList "/" . }}
{{- $subjects = append $subjects (printf "system:serviceaccount:%s:%s" (index $parts 0) (index $parts 1)) }}
{{- end }}
{{- $statements = append $statements (dict
    "Effect" "Allow"
    "Principal" (dict "Federated" (printf "arn:aws:iam::%s:oidc-provider/%s" $root.Values.accountId $host))
    "Action" "sts:AssumeRoleWithWebIdentity"
    "Condition" (dict "StringEquals" (dict (printf "%s:sub" $host) $subjects (printf "%s:aud" $host) (first $root.Values.iam.clusterIssuer.audiences)))) }}
{{- end }}
{{- if $trust.agent }}
{{- $statements = append $statements (dict
    "Effect" "Allow"
    "Principal" (dict "AWS" (printf "arn:aws:iam::%s:user/%s" $root.Values.accountId (include "keyless.agentUser" $root)))
    "Action" (list "sts:AssumeRole" "sts:TagSession")) }}
{{- end }}
{{- dict "Version" "2012-10-17" "Statement" $statements | toJson }}
{{- end }}
{{- end }}
