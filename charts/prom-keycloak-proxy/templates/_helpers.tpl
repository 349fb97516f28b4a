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
