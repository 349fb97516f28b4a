{{/*
Several hubs behind one proxy (`hubs:`): the proxy reads them from a YAML configuration file
(a ConfigMap) whose certificate, token and secret paths point at one Secret volume per hub.
*/}}

{{/* One hub entry with its defaults filled in, as YAML (callers use `fromYaml`). */}}
{{- define "prom-keycloak-proxy.hub" -}}
{{- $hub := .hub -}}
{{- $own := and (not $hub.existingSecret) (or $hub.ca $hub.cert $hub.key $hub.token $hub.authClientSecret) -}}
name: {{ $hub.name | quote }}
prometheusBaseUrl: {{ $hub.prometheusBaseUrl | quote }}
ownSecret: {{ $own }}
hasSecret: {{ or (not (empty $hub.existingSecret)) $own }}
secretName: {{ $hub.existingSecret | default (printf "%s-hub-%s" (include "prom-keycloak-proxy.fullname" .root) $hub.name) | quote }}
caKey: {{ $hub.caKey | default "ca.crt" | quote }}
certKey: {{ $hub.certKey | default "tls.crt" | quote }}
keyKey: {{ $hub.keyKey | default "tls.key" | quote }}
withCa: {{ or (not (empty $hub.ca)) (not (empty $hub.existingSecret)) }}
withCert: {{ or (not (empty $hub.cert)) (not (empty $hub.existingSecret)) }}
tokenKey: {{ $hub.tokenKey | default (ternary "token" "" (not (empty $hub.token))) | quote }}
authClientId: {{ $hub.authClientId | default "" | quote }}
authClientSecretKey: {{ $hub.authClientSecretKey | default "client-secret" | quote }}
serverName: {{ $hub.serverName | default "" | quote }}
{{- end }}

{{/* Refuse combinations the proxy would refuse at start (exit 2), at render time instead. */}}
{{- define "prom-keycloak-proxy.hubsCheck" -}}
{{- if .Values.hubs }}
{{- if or .Values.config.prometheus_base_url .Values.config.acm_hub .Values.upstreamTLS.enabled .Values.upstreamToken.existingSecret }}
{{- fail "hubs: cannot be combined with config.prometheus_base_url, config.acm_hub, upstreamTLS or upstreamToken (each hub's certificate goes only to its own upstream)" }}
{{- end }}
{{- $names := list }}
{{- range .Values.hubs }}
{{- if has .name $names }}{{ fail (printf "hubs: hub %q is listed more than once" .name) }}{{ end }}
{{- $names = append $names .name }}
{{- if and .authClientId (not (or .authClientSecret .existingSecret)) }}
{{- fail (printf "hubs[%s]: authClientId needs its secret (authClientSecretKey of existingSecret, or authClientSecret)" .name) }}
{{- end }}
{{- end }}
{{- if and .Values.defaultHub (not (has .Values.defaultHub $names)) }}
{{- fail (printf "defaultHub: %q is not one of the hubs" .Values.defaultHub) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The proxy's YAML configuration holding the hub list (file paths inside the pod). */}}
{{- define "prom-keycloak-proxy.hubsConfig" -}}
{{- $dir := include "prom-keycloak-proxy.secretsDir" . -}}
{{- $hubs := list }}
{{- range .Values.hubs }}
{{- $h := include "prom-keycloak-proxy.hub" (dict "hub" . "root" $) | fromYaml }}
{{- $path := printf "%s/hubs/%s" $dir $h.name }}
{{- $entry := dict "name" $h.name "prometheus_base_url" $h.prometheusBaseUrl }}
{{- if $h.withCa }}{{ $_ := set $entry "prometheus_ca_cert" (printf "%s/%s" $path $h.caKey) }}{{ end }}
{{- if $h.withCert }}
{{- $_ := set $entry "prometheus_tls_cert" (printf "%s/%s" $path $h.certKey) }}
{{- $_ := set $entry "prometheus_tls_key" (printf "%s/%s" $path $h.keyKey) }}
{{- end }}
{{- if $h.tokenKey }}{{ $_ := set $entry "prometheus_token_file" (printf "%s/%s" $path $h.tokenKey) }}{{ end }}
{{- if $h.authClientId }}
{{- $_ := set $entry "auth_client_id" $h.authClientId }}
{{- $_ := set $entry "auth_client_secret_file" (printf "%s/%s" $path $h.authClientSecretKey) }}
{{- end }}
{{- with $h.serverName }}{{ $_ := set $entry "prometheus_tls_server_name" . }}{{ end }}
{{- $hubs = append $hubs $entry }}
{{- end }}
{{- $doc := dict "hubs" $hubs }}
{{- with .Values.defaultHub }}{{ $_ := set $doc "default_hub" . }}{{ end }}
{{- toYaml $doc }}
{{- end }}

{{/* Container env for the hub list. */}}
{{- define "prom-keycloak-proxy.hubsEnv" -}}
{{- if .Values.hubs }}
- name: PROXY_CONFIG
  value: {{ printf "%s/hubs-config/config.yaml" (include "prom-keycloak-proxy.secretsDir" .) | quote }}
{{- end }}
{{- end }}

{{/* Volume mounts: the configuration and one Secret per hub. */}}
{{- define "prom-keycloak-proxy.hubsMounts" -}}
{{- $dir := include "prom-keycloak-proxy.secretsDir" . -}}
{{- if .Values.hubs }}
- name: hubs-config
  mountPath: {{ printf "%s/hubs-config" $dir }}
  readOnly: true
{{- range $i, $hub := .Values.hubs }}
{{- $h := include "prom-keycloak-proxy.hub" (dict "hub" $hub "root" $) | fromYaml }}
{{- if $h.hasSecret }}
- name: {{ printf "hub-%d" $i }}
  mountPath: {{ printf "%s/hubs/%s" $dir $h.name }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes: the configuration and one Secret per hub. */}}
{{- define "prom-keycloak-proxy.hubsVolumes" -}}
{{- if .Values.hubs }}
- name: hubs-config
  configMap:
    name: {{ printf "%s-hubs" (include "prom-keycloak-proxy.fullname" .) }}
{{- range $i, $hub := .Values.hubs }}
{{- $h := include "prom-keycloak-proxy.hub" (dict "hub" $hub "root" $) | fromYaml }}
{{- if $h.hasSecret }}
- name: {{ printf "hub-%d" $i }}
  secret:
    secretName: {{ $h.secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}
{{- end }}
