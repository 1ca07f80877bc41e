{{- define "ambit-waypoint-controller.name" -}}
ambit-waypoint-controller
{{- end }}

{{- define "ambit-waypoint-controller.labels" -}}
app.kubernetes.io/name: {{ include "ambit-waypoint-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: ambit
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "ambit-waypoint-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ambit-waypoint-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ambit-waypoint-controller.image" -}}
{{- $global := .Values.global | default dict -}}
{{- $hub := .Values.hub | default $global.hub | default "ambit" -}}
{{- $repository := .Values.image.repository | default (printf "%s/ambit" $hub) -}}
{{ $repository }}:{{ .Values.image.tag | default .Values.tag | default $global.tag | default .Chart.AppVersion }}
{{- end }}
