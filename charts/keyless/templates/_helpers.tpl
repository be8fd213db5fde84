{{/* Names, labels, images and the values every component shares. */}}

{{- define "keyless.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keyless.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's name: FULLNAME-COMPONENT (the server is FULLNAME itself). */}}
{{- define "keyless.component" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
{{- printf "%s-%s" (include "keyless.fullname" $root | trunc 54 | trimSuffix "-") $component }}
{{- end }}

{{- define "keyless.labels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{ include "keyless.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: keyless
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "keyless.selectorLabels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
app.kubernetes.io/name: {{ include "keyless.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ $component }}
{{- end }}

{{/* The image reference: repository, then @digest or :tag (the appVersion by default). */}}
{{- define "keyless.image" -}}
{{- $image := index . 0 }}{{- $root := index . 1 -}}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Where the image keeps the binary (the Containerfile puts it there). */}}
{{- define "keyless.binary" -}}/usr/local/bin/keyless{{- end }}

{{- define "keyless.secretName" -}}
{{- default (include "keyless.component" (list . "secrets")) .Values.existingSecret }}
{{- end }}

{{- define "keyless.serverTlsSecret" -}}
{{- default (include "keyless.component" (list . "tls")) .Values.server.tls.secretName }}
{{- end }}

{{/* The server's URL inside the cluster, as pods, the agent and the webhook reach it. */}}
{{- define "keyless.serverUrl" -}}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" .Values.server.tls.enabled) (include "keyless.fullname" .) .Release.Namespace (int .Values.server.port) }}
{{- end }}

{{- define "keyless.issuer" -}}
{{- default (include "keyless.serverUrl" .) .Values.server.issuer }}
{{- end }}

{{/* The IAM user the agent assumes roles as; roles with `trust.agent` trust it. */}}
{{- define "keyless.agentUser" -}}keyless-agent{{- end }}

{{/* The host (and path) of the cluster issuer, as IAM names its provider and condition keys. */}}
{{- define "keyless.clusterIssuerHost" -}}
{{- .Values.iam.clusterIssuer.url | trimPrefix "https://" | trimPrefix "http://" | trimSuffix "/" }}
{{- end }}

{{/* The Secrets that hold IAM users' secret keys, each once, sorted (JSON list). */}}
{{- define "keyless.userSecrets" -}}
{{- $names := dict }}
{{- range .Values.iam.users }}
{{- with .secretAccessKeySecret }}{{ $_ := set $names .name true }}{{ end }}
{{- end }}
{{- keys $names | sortAlpha | toJson }}
{{- end }}

{{/* Whether the server keeps its data folder on a PersistentVolume (a StatefulSet). */}}
{{- define "keyless.stateful" -}}
{{- if or (eq .Values.server.mode "embedded") (not .Values.server.iamStore.url) }}true{{ end }}
{{- end }}

{{/*
Whether the cluster issuer's keys are read from the API server in the cluster, with the pod's
token and the cluster's CA: no JWKS given, and the issuer is the API server's in-cluster name.
Another issuer (EKS's, a public bucket) is fetched as any provider, with no token.
*/}}
{{- define "keyless.issuerIsApiServer" -}}
{{- $host := include "keyless.clusterIssuerHost" . }}
{{- if and (not .Values.iam.clusterIssuer.jwks) (hasPrefix "https://" .Values.iam.clusterIssuer.url) (has $host (list "kubernetes.default.svc.cluster.local" "kubernetes.default.svc" "kubernetes.default" "kubernetes")) }}true{{ end }}
{{- end }}

{{- define "keyless.fetchClusterIssuer" -}}
{{- if and .Values.iam.clusterIssuer.enabled (include "keyless.issuerIsApiServer" .) }}true{{ end }}
{{- end }}

{{/* The restricted container security context. */}}
{{- define "keyless.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The pod security context of non-root pods: the image's user 65532, which owns volumes. */}}
{{- define "keyless.restrictedPod" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Checks the values that the schema cannot relate to each other. */}}
{{- define "keyless.validate" -}}
{{- $s := .Values.server }}
{{- if and $s.enabled (eq $s.mode "gateway") (not $s.upstream.url) }}
{{- fail "server.upstream.url: gateway mode needs the upstream store's URL" }}
{{- end }}
{{- if and $s.enabled (eq $s.mode "gateway") (not $s.upstream.credentialsSecret) }}
{{- fail "server.upstream.credentialsSecret: gateway mode needs a Secret with Keyless's key pair at the upstream (access-key-id, secret-access-key)" }}
{{- end }}
{{- if and $s.enabled (eq $s.mode "embedded") $s.iamStore.url }}
{{- fail "server.iamStore.url: IAM state in PostgreSQL is for gateway mode, whose replicas share one upstream; embedded mode keeps objects on one volume" }}
{{- end }}
{{- if and $s.iamStore.url (not $s.iamStore.passwordSecret) (not (contains "@" $s.iamStore.url)) }}
{{- fail "server.iamStore: give the database user in the URL (postgres://USER@HOST/DB) and its password in passwordSecret" }}
{{- end }}
{{- if and $s.tls.certManager.enabled (not $s.tls.certManager.issuerRef.name) }}
{{- fail "server.tls.certManager.issuerRef.name: cert-manager needs an Issuer or ClusterIssuer" }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate "cert-manager") (not .Values.webhook.tls.certManager.issuerRef.name) }}
{{- fail "webhook.tls.certManager.issuerRef.name: cert-manager needs an Issuer or ClusterIssuer" }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate "secret") (or (not .Values.webhook.tls.secretName) (not .Values.webhook.tls.caBundle)) }}
{{- fail "webhook.tls: `certificate: secret` needs secretName and caBundle" }}
{{- end }}
{{- if and .Values.agent.enabled (not $s.enabled) (or (not .Values.agent.stsEndpoint) (not .Values.agent.credentialsSecret)) }}
{{- fail "agent: without this release's server, give agent.stsEndpoint and agent.credentialsSecret (the agent's key pair at that server)" }}
{{- end }}
{{- if and .Values.webhook.enabled (not $s.enabled) (or (not .Values.webhook.stsEndpoint) (not .Values.webhook.s3Endpoint)) }}
{{- fail "webhook: without this release's server, give webhook.stsEndpoint and webhook.s3Endpoint" }}
{{- end }}
{{- range .Values.iam.roles }}
{{- if and (not .assumeRolePolicy) (not .trust) }}
{{- fail (printf "iam.roles[%s]: give assumeRolePolicy or trust" .name) }}
{{- end }}
{{- if and .assumeRolePolicy .trust }}
{{- fail (printf "iam.roles[%s]: give assumeRolePolicy or trust, not both" .name) }}
{{- end }}
{{- if and .trust .trust.serviceAccounts (not $.Values.iam.clusterIssuer.enabled) }}
{{- fail (printf "iam.roles[%s].trust.serviceAccounts: needs iam.clusterIssuer.enabled" .name) }}
{{- end }}
{{- end }}
{{- $g := .Values.gitlab }}
{{- range .Values.iam.roles }}
{{- if and $g.mode (eq .name (last (splitList "/" $g.role))) .trust }}
{{- $sa := printf "%s/%s" $g.namespace $g.serviceAccount }}
{{- if and (eq $g.mode "irsa") (not (has $sa (.trust.serviceAccounts | default list))) }}
{{- fail (printf "iam.roles[%s].trust.serviceAccounts: GitLab's pods (gitlab.namespace/gitlab.serviceAccount) are %s; add it" .name $sa) }}
{{- end }}
{{- if and (eq $g.mode "annotation") (not .trust.agent) }}
{{- fail (printf "iam.roles[%s].trust.agent: GitLab's pods get the role through the node agent; set it" .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq .Values.gitlab.mode "annotation") (not .Values.agent.enabled) }}
{{- fail "gitlab.mode annotation: GitLab's pods get their role from the node agent; set agent.enabled" }}
{{- end }}
{{- if and (eq .Values.gitlab.mode "irsa") (not .Values.webhook.enabled) }}
{{- fail "gitlab.mode irsa: GitLab's pods get their token from the webhook's mutation; set webhook.enabled" }}
{{- end }}
{{- end }}

{{/*
The `keyless gitlab render` command for GitLab's chart in `gitlab.mode` (NOTES.txt prints it;
the chart tests run it): an ARN for IRSA, the role's name for annotation mode.
*/}}
{{- define "keyless.gitlabRender" -}}
{{- $g := .Values.gitlab }}
{{- $role := ternary (printf "arn:aws:iam::%s:role/%s" .Values.accountId $g.role) $g.role (and (eq $g.mode "irsa") (not (hasPrefix "arn:" $g.role))) }}
{{- $args := list (include "keyless.binary" .) "gitlab" "render" (printf "--mode=%s" $g.mode) (printf "--role=%s" $role) (printf "--region=%s" .Values.region) (printf "--endpoint=%s" (default (include "keyless.serverUrl" .) .Values.webhook.s3Endpoint)) (printf "--registry-bucket=%s" $g.registryBucket) }}
{{- if eq $g.mode "irsa" }}
{{- $args = append $args (printf "--service-account=%s" $g.serviceAccount) }}
{{- end }}
{{- join " " $args }}
{{- end }}
