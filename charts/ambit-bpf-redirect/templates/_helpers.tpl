{{- define "ambit-bpf-redirect.name" -}}
ambit-bpf-redirect
{{- end }}

{{- define "ambit-bpf-redirect.labels" -}}
app.kubernetes.io/name: {{ include "ambit-bpf-redirect.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: ambit
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "ambit-bpf-redirect.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ambit-bpf-redirect.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ambit-bpf-redirect.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
