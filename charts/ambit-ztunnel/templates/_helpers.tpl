{{/* ztunnel's name is fixed: the CA trusts istio-system/ztunnel as a node account (CA_TRUSTED_NODE_ACCOUNTS). */}}
{{- define "ambit-ztunnel.name" -}}
ztunnel
{{- end }}

{{- define "ambit-ztunnel.labels" -}}
app.kubernetes.io/name: {{ include "ambit-ztunnel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: ambit
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "ambit-ztunnel.selectorLabels" -}}
app: ztunnel
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ambit-ztunnel.image" -}}
{{- $global := .Values.global | default dict -}}
{{- $hub := .Values.hub | default $global.hub | default "ambit" -}}
{{- $repository := .Values.image.repository | default (printf "%s/ambit" $hub) -}}
{{ $repository }}:{{ .Values.image.tag | default .Values.tag | default $global.tag | default .Chart.AppVersion }}
{{- end }}
