{{/*
moat-state: named templates shared by this chart's manifests (names,
labels, image, environment). Prefixed with the chart name because helm puts
the templates of an umbrella chart and all its subcharts in one namespace.
*/}}

{{- define "moat-state.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name when it already contains the chart name, the
chart name when it starts with "<release>-" (release "moat" gives
"moat-state"), otherwise "<release>-<chart>"; 63 characters at most.
*/}}
{{- define "moat-state.fullname" -}}
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

{{- define "moat-state.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "moat-state.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moat-state.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "moat-state.labels" -}}
helm.sh/chart: {{ include "moat-state.chart" . }}
{{ include "moat-state.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: state
app.kubernetes.io/part-of: moat
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "moat-state.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "moat-state.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "moat-state.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- with .Values.global.imageRegistry -}}{{ . }}/{{- end -}}
{{- printf "%s:%s" .Values.image.repository (toString $tag) -}}
{{- end -}}

{{/* The Secret holding DATABASE_URL (postgres only): existingSecret or this chart's. */}}
{{- define "moat-state.databaseSecret" -}}
{{- if eq .Values.database.type "postgres" -}}
{{- .Values.database.existingSecret | default (include "moat-state.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret mounted at /etc/moat-tls: tls.secretName or "<fullname>-tls". */}}
{{- define "moat-state.tlsSecret" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "moat-state.fullname" .)) -}}
{{- end -}}

{{/* plaintext or mutual TLS: how the gRPC listener serves (its start-up log says the same). */}}
{{- define "moat-state.tlsMode" -}}
{{- if .Values.tls.enabled -}}mutual TLS{{- else -}}plaintext{{- end -}}
{{- end -}}

{{/* Environment of the state container. */}}
{{- define "moat-state.env" -}}
- name: MOAT_CONFIG_DIR
  value: /etc/moat
- name: MOAT_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: RUST_LOG
  value: {{ .Values.log.level | quote }}
- name: MOAT_STATE__GRPC__LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.grpc) | quote }}
- name: MOAT_STATE__HTTP__LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.http) | quote }}
{{- if .Values.tls.enabled }}
# Mutual TLS on gRPC from the mounted Secret, read again when it changes:
# only callers whose certificate ca.crt signed and names an allowed client.
- name: MOAT_STATE__TLS__CERT
  value: /etc/moat-tls/tls.crt
- name: MOAT_STATE__TLS__KEY
  value: /etc/moat-tls/tls.key
- name: MOAT_STATE__TLS__CLIENT_CA
  value: /etc/moat-tls/ca.crt
- name: MOAT_STATE__TLS__ALLOWED_CLIENTS
  value: {{ toJson .Values.tls.allowedClients | quote }}
{{- else }}
# Plaintext, said explicitly: without it (or a certificate) moat-state refuses to start.
- name: MOAT_STATE__TLS__PLAINTEXT
  value: "true"
{{- end }}
{{- if eq .Values.database.type "postgres" }}
# DATABASE_URL from the Secret, as the highest-precedence setting.
- name: MOAT_STATE__DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "moat-state.databaseSecret" . }}
      key: {{ if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}DATABASE_URL{{ end }}
{{- else }}
- name: MOAT_STATE__DATABASE__URL
  value: {{ printf "sqlite://%s" .Values.database.sqlitePath | quote }}
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
