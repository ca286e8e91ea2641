{{/*
moat-collector: named templates shared by this chart's manifests (names,
labels, image, environment). Prefixed with the chart name because helm puts
the templates of an umbrella chart and all its subcharts in one namespace.
*/}}

{{- define "moat-collector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name when it already contains the chart name, the
chart name when it starts with "<release>-" (release "moat" gives
"moat-collector"), otherwise "<release>-<chart>"; 63 characters at most.
*/}}
{{- define "moat-collector.fullname" -}}
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

{{- define "moat-collector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "moat-collector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moat-collector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "moat-collector.labels" -}}
helm.sh/chart: {{ include "moat-collector.chart" . }}
{{ include "moat-collector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: collector
app.kubernetes.io/part-of: moat
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "moat-collector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "moat-collector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "moat-collector.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- with .Values.global.imageRegistry -}}{{ . }}/{{- end -}}
{{- printf "%s:%s" .Values.image.repository (toString $tag) -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret of the NATS client certificate (mounted at /etc/moat-nats-tls): nats.tls.secretName or "<fullname>-nats-tls". */}}
{{- define "moat-collector.natsTlsSecret" -}}
{{- .Values.nats.tls.secretName | default (printf "%s-nats-tls" (include "moat-collector.fullname" .)) -}}
{{- end -}}

{{/* Selector labels of one shard's pods: the chart's plus moat.dev/shard. */}}
{{- define "moat-collector.shardSelectorLabels" -}}
{{ include "moat-collector.selectorLabels" .root }}
moat.dev/shard: {{ .shard.name }}
{{- end -}}

{{/* Environment of a collector container; called with (dict "root" $ "shard" $shard). */}}
{{- define "moat-collector.env" -}}
{{- $v := .root.Values -}}
- name: MOAT_CONFIG_DIR
  value: /etc/moat
- name: MOAT_LOG_FORMAT
  value: {{ $v.log.format | quote }}
- name: RUST_LOG
  value: {{ $v.log.level | quote }}
- name: MOAT_COLLECTOR__HTTP__LISTEN
  value: {{ printf "0.0.0.0:%d" (int $v.containerPorts.http) | quote }}
- name: MOAT_COLLECTOR__NATS__URL
  value: {{ $v.nats.url | default $v.global.nats.url | required "nats.url or global.nats.url is required" | quote }}
- name: MOAT_COLLECTOR__STREAM__REPLICAS
  value: {{ $v.nats.streamReplicas | int | quote }}
{{- if $v.nats.tls.enabled }}
# TLS to NATS: the CA of the server's certificate, and this service's
# certificate, whose DNS name is its NATS user (read at every connect).
- name: MOAT_COLLECTOR__NATS__TLS__CA
  value: /etc/moat-nats-tls/ca.crt
- name: MOAT_COLLECTOR__NATS__TLS__CERT
  value: /etc/moat-nats-tls/tls.crt
- name: MOAT_COLLECTOR__NATS__TLS__KEY
  value: /etc/moat-nats-tls/tls.key
{{- end }}
{{- if gt (int (.shard.replicas | default 1)) 1 }}
{{- /* Replicas of one shard publish the same events: one event per message
       keeps JetStream's per-event deduplication between them. */}}
- name: MOAT_COLLECTOR__PUBLISHER__MAX_BATCH_EVENTS
  value: "1"
{{- end }}
{{- with $v.global.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $v.global.otel.samplerRatio | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .shard.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
