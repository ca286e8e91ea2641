{{/*
moat-gateway: named templates shared by this chart's manifests (names,
labels, image, environment). Prefixed with the chart name because helm puts
the templates of an umbrella chart and all its subcharts in one namespace.
*/}}

{{- define "moat-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name when it already contains the chart name, the
chart name when it starts with "<release>-" (release "moat" gives
"moat-gateway"), otherwise "<release>-<chart>"; 63 characters at most.
*/}}
{{- define "moat-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else if hasPrefix (printf "%s-" .Release.Name) $name -}}
{{- $name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "moat-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "moat-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moat-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "moat-gateway.labels" -}}
helm.sh/chart: {{ include "moat-gateway.chart" . }}
{{ include "moat-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: moat
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "moat-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "moat-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "moat-gateway.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- with .Values.global.imageRegistry -}}{{ . }}/{{- end -}}
{{- printf "%s:%s" .Values.image.repository (toString $tag) -}}
{{- end -}}

{{/*
The moat-state endpoint: values, or the moat-state Service of this release;
https:// exactly with state.tls (the gateway refuses to start otherwise).
*/}}
{{- define "moat-gateway.stateEndpoint" -}}
{{- $scheme := ternary "https" "http" (.Values.state.tls | default false) -}}
{{- if .Values.state.endpoint -}}
{{- if not (hasPrefix (printf "%s://" $scheme) .Values.state.endpoint) -}}
{{- fail (printf "moat-gateway: state.endpoint %q must be %s:// since state.tls is %t (the gateway refuses any other combination)" .Values.state.endpoint $scheme (.Values.state.tls | default false)) -}}
{{- end -}}
{{- .Values.state.endpoint -}}
{{- else -}}
{{- $name := "moat-state" -}}
{{- $host := printf "%s-%s" .Release.Name $name -}}
{{- if contains $name .Release.Name -}}
{{- $host = .Release.Name -}}
{{- else if hasPrefix (printf "%s-" .Release.Name) $name -}}
{{- $host = $name -}}
{{- end -}}
{{- printf "%s://%s:50052" $scheme ($host | trunc 63 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret mounted at /etc/moat-tls: tls.secretName or "<fullname>-tls". */}}
{{- define "moat-gateway.tlsSecret" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "moat-gateway.fullname" .)) -}}
{{- end -}}

{{/* Non-empty when the pods mount the TLS Secret: TLS on the listeners, or to moat-state. */}}
{{- define "moat-gateway.tlsMounted" -}}
{{- if or .Values.tls.enabled .Values.state.tls -}}true{{- end -}}
{{- end -}}

{{/* plaintext, TLS or mutual TLS: how the gateway serves (its start-up log says the same). */}}
{{- define "moat-gateway.tlsMode" -}}
{{- if not .Values.tls.enabled -}}plaintext{{- else if .Values.tls.clientAuth -}}mutual TLS{{- else -}}TLS{{- end -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret of the NATS client certificate (mounted at /etc/moat-nats-tls): nats.tls.secretName or "<fullname>-nats-tls". */}}
{{- define "moat-gateway.natsTlsSecret" -}}
{{- .Values.nats.tls.secretName | default (printf "%s-nats-tls" (include "moat-gateway.fullname" .)) -}}
{{- end -}}

{{/* The Secret and key holding the ClickHouse password, empty without one. */}}
{{- define "moat-gateway.clickhouseSecret" -}}
{{- if .Values.clickhouse.existingSecret -}}
{{- .Values.clickhouse.existingSecret -}}
{{- else if .Values.clickhouse.password -}}
{{- include "moat-gateway.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "moat-gateway.clickhouseSecretKey" -}}
{{- ternary .Values.clickhouse.existingSecretKey "clickhouse-password" (not (empty .Values.clickhouse.existingSecret)) -}}
{{- end -}}

{{/* Non-empty when the tokens file comes from this chart's Secret. */}}
{{- define "moat-gateway.ownTokens" -}}
{{- if and .Values.auth.tokens (not .Values.auth.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* Non-empty when this chart renders a Secret. */}}
{{- define "moat-gateway.ownSecret" -}}
{{- if or (include "moat-gateway.ownTokens" .) (and .Values.clickhouse.password (not .Values.clickhouse.existingSecret)) .Values.rpc.upstreams -}}true{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the tokens file, empty when there are no tokens. */}}
{{- define "moat-gateway.tokensSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else if .Values.auth.tokens -}}
{{- include "moat-gateway.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* Environment of the gateway container. */}}
{{- define "moat-gateway.env" -}}
- name: MOAT_CONFIG_DIR
  value: /etc/moat
- name: MOAT_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: RUST_LOG
  value: {{ .Values.log.level | quote }}
- name: MOAT_GATEWAY__GRPC__LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.grpc) | quote }}
- name: MOAT_GATEWAY__HTTP__LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.http) | quote }}
- name: MOAT_GATEWAY__NATS__URL
  value: {{ .Values.nats.url | default .Values.global.nats.url | required "nats.url or global.nats.url is required" | quote }}
{{- if .Values.nats.tls.enabled }}
# TLS to NATS: the CA of the server's certificate, and this service's
# certificate, whose DNS name is its NATS user (read at every connect).
- name: MOAT_GATEWAY__NATS__TLS__CA
  value: /etc/moat-nats-tls/ca.crt
- name: MOAT_GATEWAY__NATS__TLS__CERT
  value: /etc/moat-nats-tls/tls.crt
- name: MOAT_GATEWAY__NATS__TLS__KEY
  value: /etc/moat-nats-tls/tls.key
{{- end }}
- name: MOAT_GATEWAY__CLICKHOUSE__URL
  value: {{ .Values.clickhouse.url | default .Values.global.clickhouse.url | required "clickhouse.url or global.clickhouse.url is required" | quote }}
- name: MOAT_GATEWAY__CLICKHOUSE__DATABASE
  value: {{ .Values.clickhouse.database | default .Values.global.clickhouse.database | required "clickhouse.database or global.clickhouse.database is required" | quote }}
- name: MOAT_GATEWAY__CLICKHOUSE__USER
  value: {{ .Values.clickhouse.user | quote }}
{{- if include "moat-gateway.clickhouseSecret" . }}
- name: MOAT_GATEWAY__CLICKHOUSE__PASSWORD_FILE
  value: /etc/moat-clickhouse/password
{{- end }}
{{- if .Values.tls.enabled }}
# TLS on gRPC and HTTP from the mounted Secret, read again when it changes.
- name: MOAT_GATEWAY__TLS__CERT
  value: /etc/moat-tls/tls.crt
- name: MOAT_GATEWAY__TLS__KEY
  value: /etc/moat-tls/tls.key
{{- if .Values.tls.clientAuth }}
- name: MOAT_GATEWAY__TLS__CLIENT_CA
  value: /etc/moat-tls/ca.crt
{{- end }}
{{- else }}
# Plaintext, said explicitly: without it (or a certificate) the gateway refuses to start.
- name: MOAT_GATEWAY__TLS__PLAINTEXT
  value: "true"
{{- end }}
- name: MOAT_GATEWAY__STATE__ENDPOINT
  value: {{ include "moat-gateway.stateEndpoint" . | quote }}
{{- if .Values.state.tls }}
# Mutual TLS to moat-state: its CA, and the gateway's certificate as client identity.
- name: MOAT_GATEWAY__STATE__TLS__CA
  value: /etc/moat-tls/ca.crt
- name: MOAT_GATEWAY__STATE__TLS__CERT
  value: /etc/moat-tls/tls.crt
- name: MOAT_GATEWAY__STATE__TLS__KEY
  value: /etc/moat-tls/tls.key
{{- with .Values.state.serverName }}
- name: MOAT_GATEWAY__STATE__TLS__SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if include "moat-gateway.tokensSecret" . }}
- name: MOAT_GATEWAY__AUTH__TOKENS_FILE
  value: /etc/moat-secrets/tokens
{{- end }}
{{- $fullname := include "moat-gateway.fullname" . }}
{{- range $chain, $urls := .Values.rpc.upstreams }}
- name: {{ printf "MOAT_GATEWAY__RPC__CHAINS__%s__UPSTREAMS" (upper $chain) }}
  valueFrom:
    secretKeyRef:
      name: {{ $fullname }}
      key: {{ printf "rpc-upstreams-%s" $chain }}
{{- end }}
{{- with .Values.global.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $.Values.global.otel.samplerRatio | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
