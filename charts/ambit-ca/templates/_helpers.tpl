{{/* Name of the chart's objects: the release-independent component name, as Istio's charts do. */}}
{{- define "ambit-ca.name" -}}
ambit-ca
{{- end }}

{{/* Labels on every object. */}}
{{- define "ambit-ca.labels" -}}
app.kubernetes.io/name: {{ include "ambit-ca.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: ambit
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels (immutable once deployed). */}}
{{- define "ambit-ca.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ambit-ca.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The image reference. */}}
{{- define "ambit-ca.image" -}}
{{- $global := .Values.global | default dict -}}
{{- $hub := .Values.hub | default $global.hub | default "ambit" -}}
{{- $repository := .Values.image.repository | default (printf "%s/ambit" $hub) -}}
{{ $repository }}:{{ .Values.image.tag | default .Values.tag | default $global.tag | default .Chart.AppVersion }}
{{- end }}
