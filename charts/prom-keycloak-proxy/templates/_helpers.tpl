{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "prom-keycloak-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; reuses the release name when it already contains the chart name. */}}
{{- define "prom-keycloak-proxy.fullname" -}}
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

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "prom-keycloak-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "prom-keycloak-proxy.labels" -}}
helm.sh/chart: {{ include "prom-keycloak-proxy.chart" . }}
{{ include "prom-keycloak-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: proxy
{{- end }}

{{/* Selector labels (stable: never the chart version). */}}
{{- define "prom-keycloak-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prom-keycloak-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "prom-keycloak-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prom-keycloak-proxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: digest wins over tag; tag defaults to appVersion. */}}
{{- define "prom-keycloak-proxy.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the Keycloak client secret. */}}
{{- define "prom-keycloak-proxy.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "prom-keycloak-proxy.fullname" .)) }}
{{- end }}

{{/* Name of the Secret holding the upstream mTLS files. */}}
{{- define "prom-keycloak-proxy.upstreamTLSSecretName" -}}
{{- .Values.upstreamTLS.existingSecret | default (printf "%s-upstream-tls" (include "prom-keycloak-proxy.fullname" .)) }}
{{- end }}

{{/* True when a client secret is configured (existing Secret or inline). */}}
{{- define "prom-keycloak-proxy.hasAuthSecret" -}}
{{- if or .Values.auth.existingSecret .Values.auth.clientSecret }}true{{ end }}
{{- end }}

{{/* Mount directories. */}}
{{- define "prom-keycloak-proxy.secretsDir" -}}/etc/prom-keycloak-proxy{{- end }}

{{/* Fail the render, listing every missing required value at once (a pod without them would
crash-loop with exit code 2). */}}
{{- define "prom-keycloak-proxy.required" -}}
{{- $missing := list }}
{{- $required := list "auth_base_url" "auth_realm" "auth_client_id" }}
{{- if not .Values.hubs }}{{ $required = concat (list "prometheus_base_url" "acm_hub") $required }}{{ end }}
{{- range $k := $required }}
{{- if not (index $.Values.config $k) }}{{ $missing = append $missing (printf "config.%s" $k) }}{{ end }}
{{- end }}
{{- if not (include "prom-keycloak-proxy.hasAuthSecret" .) }}{{ $missing = append $missing "auth.existingSecret (or auth.clientSecret)" }}{{ end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}{{ $missing = append $missing "ingress.host (ingress.enabled is true)" }}{{ end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}{{ $missing = append $missing "tls.existingSecret (tls.enabled is true)" }}{{ end }}
{{- $cache := toString (default "" .Values.config.cache) }}
{{- if and (has $cache (list "memcached" "redis")) (not .Values.config.cache_address) }}{{ $missing = append $missing (printf "config.cache_address (config.cache is %s)" $cache) }}{{ end }}
{{- if and (has $cache (list "memcached" "redis")) (not .Values.resultsCache.existingSecret) }}{{ $missing = append $missing (printf "resultsCache.existingSecret with the HMAC key (config.cache is %s)" $cache) }}{{ end }}
{{- if $missing }}
{{- fail (printf "missing required values: %s (see the chart README, \"What you need first\")" (join ", " $missing)) }}
{{- end }}
{{- end }}

{{/* Pods that share the per-process limits: replicas (maxReplicas with autoscaling) × workers. */}}
{{- define "prom-keycloak-proxy.processes" -}}
{{- $replicas := ternary .Values.autoscaling.maxReplicas .Values.replicaCount .Values.autoscaling.enabled }}
{{- mul (int $replicas) (int (default 1 .Values.config.workers)) }}
{{- end }}

{{/* PROXY_* env entries derived from `totals:` (keys already set under `config:` win). */}}
{{- define "prom-keycloak-proxy.totalsEnv" -}}
{{- $n := int (include "prom-keycloak-proxy.processes" .) }}
{{- range $k, $total := .Values.totals }}
{{- if not (index $.Values.config $k) }}
- name: {{ printf "PROXY_%s" (upper $k) }}
  value: {{ max 1 (div (int $total) $n) | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* A single replica without autoscaling: no PodDisruptionBudget, a NOTES warning. */}}
{{- define "prom-keycloak-proxy.singleReplica" -}}
{{- if and (not .Values.autoscaling.enabled) (le (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}
