{{/*
moat-storage-writer: named templates shared by this chart's manifests (names,
labels, image, environment). Prefixed with the chart name because helm puts
the templates of an umbrella chart and all its subcharts in one namespace.
*/}}

{{- define "moat-storage-writer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name when it already contains the chart name, the
chart name when it starts with "<release>-" (release "moat" gives
"moat-storage-writer"), otherwise "<release>-<chart>"; 63 characters at most.
*/}}
{{- define "moat-storage-writer.fullname" -}}
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

{{- define "moat-storage-writer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "moat-storage-writer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moat-storage-writer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "moat-storage-writer.labels" -}}
helm.sh/chart: {{ include "moat-storage-writer.chart" . }}
{{ include "moat-storage-writer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: storage-writer
app.kubernetes.io/part-of: moat
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "moat-storage-writer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "moat-storage-writer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "moat-storage-writer.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- with .Values.global.imageRegistry -}}{{ . }}/{{- end -}}
{{- printf "%s:%s" .Values.image.repository (toString $tag) -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret of the NATS client certificate (mounted at /etc/moat-nats-tls): nats.tls.secretName or "<fullname>-nats-tls". */}}
{{- define "moat-storage-writer.natsTlsSecret" -}}
{{- .Values.nats.tls.secretName | default (printf "%s-nats-tls" (include "moat-storage-writer.fullname" .)) -}}
{{- end -}}

{{/* The Secret and key holding the ClickHouse password, empty without one. */}}
{{- define "moat-storage-writer.clickhouseSecret" -}}
{{- if .Values.clickhouse.existingSecret -}}
{{- .Values.clickhouse.existingSecret -}}
{{- else if .Values.clickhouse.password -}}
{{- include "moat-storage-writer.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "moat-storage-writer.clickhouseSecretKey" -}}
{{- ternary .Values.clickhouse.existingSecretKey "clickhouse-password" (not (empty .Values.clickhouse.existingSecret)) -}}
{{- end -}}

{{/* Mounts of the writer and migrate containers. */}}
{{- define "moat-storage-writer.volumeMounts" -}}
- name: config
  mountPath: /etc/moat
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "moat-storage-writer.clickhouseSecret" . }}
# The ClickHouse password as a file (clickhouse.password_file).
- name: clickhouse-password
  mountPath: /etc/moat-clickhouse
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.enabled }}
# The whole Secret as a directory (no subPath): a renewed certificate
# reaches the pod and is used at the next connect.
- name: nats-tls
  mountPath: /etc/moat-nats-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Environment of the writer and migrate containers. */}}
{{- define "moat-storage-writer.env" -}}
- name: MOAT_CONFIG_DIR
  value: /etc/moat
- name: MOAT_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: RUST_LOG
  value: {{ .Values.log.level | quote }}
- name: MOAT_STORAGE_WRITER__HTTP__LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.http) | quote }}
- name: MOAT_STORAGE_WRITER__NATS__URL
  value: {{ .Values.nats.url | default .Values.global.nats.url | required "nats.url or global.nats.url is required" | quote }}
- name: MOAT_STORAGE_WRITER__STREAM__NAME
  value: {{ .Values.nats.stream | quote }}
- name: MOAT_STORAGE_WRITER__WRITER__CONSUMER
  value: {{ .Values.nats.consumer | quote }}
- name: MOAT_STORAGE_WRITER__STREAM__REPLICAS
  value: {{ .Values.nats.streamReplicas | int | quote }}
{{- if .Values.nats.tls.enabled }}
# TLS to NATS: the CA of the server's certificate, and this service's
# certificate, whose DNS name is its NATS user (read at every connect).
- name: MOAT_STORAGE_WRITER__NATS__TLS__CA
  value: /etc/moat-nats-tls/ca.crt
- name: MOAT_STORAGE_WRITER__NATS__TLS__CERT
  value: /etc/moat-nats-tls/tls.crt
- name: MOAT_STORAGE_WRITER__NATS__TLS__KEY
  value: /etc/moat-nats-tls/tls.key
{{- end }}
- name: MOAT_STORAGE_WRITER__CLICKHOUSE__URL
  value: {{ .Values.clickhouse.url | default .Values.global.clickhouse.url | required "clickhouse.url or global.clickhouse.url is required" | quote }}
- name: MOAT_STORAGE_WRITER__CLICKHOUSE__DATABASE
  value: {{ .Values.clickhouse.database | default .Values.global.clickhouse.database | required "clickhouse.database or global.clickhouse.database is required" | quote }}
- name: MOAT_STORAGE_WRITER__CLICKHOUSE__USER
  value: {{ .Values.clickhouse.user | quote }}
{{- if .Values.clickhouse.cluster }}
- name: MOAT_STORAGE_WRITER__CLICKHOUSE__CLUSTER
  value: {{ .Values.clickhouse.cluster | quote }}
{{- end }}
{{- if include "moat-storage-writer.clickhouseSecret" . }}
- name: MOAT_STORAGE_WRITER__CLICKHOUSE__PASSWORD_FILE
  value: /etc/moat-clickhouse/password
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
