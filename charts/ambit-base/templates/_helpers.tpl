{{- define "ambit-base.labels" -}}
app.kubernetes.io/name: ambit-base
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: ambit
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Metadata of a CRD this chart owns: labels, and keep on uninstall. */}}
{{- define "ambit-base.crdMetadata" -}}
labels:
  {{- include "ambit-base.labels" . | nindent 2 }}
{{- if .Values.keepCRDs }}
annotations:
  helm.sh/resource-policy: keep
{{- end }}
{{- end }}

{{/* A list of strings. */}}
{{- define "ambit-base.strings" -}}
type: array
items:
  type: string
{{- end }}

{{/* Istio's WorkloadSelector and PolicyTargetReference shapes. */}}
{{- define "ambit-base.selector" -}}
type: object
properties:
  matchLabels:
    type: object
    additionalProperties:
      type: string
{{- end }}
{{- define "ambit-base.targetRef" -}}
type: object
required: [kind, name]
properties:
  group:
    type: string
  kind:
    type: string
  name:
    type: string
  namespace:
    type: string
{{- end }}

{{/* AuthorizationPolicy spec (istio.io/api security/v1beta1/authorization.proto). */}}
{{- define "ambit-base.authorizationPolicySchema" -}}
openAPIV3Schema:
  type: object
  properties:
    spec:
      type: object
      properties:
        selector:
          {{- include "ambit-base.selector" . | nindent 10 }}
        targetRef:
          {{- include "ambit-base.targetRef" . | nindent 10 }}
        targetRefs:
          type: array
          items:
            {{- include "ambit-base.targetRef" . | nindent 12 }}
        action:
          type: string
          enum: [ALLOW, DENY, AUDIT, CUSTOM]
        provider:
          type: object
          properties:
            name:
              type: string
        rules:
          type: array
          items:
            type: object
            properties:
              from:
                type: array
                items:
                  type: object
                  properties:
                    source:
                      type: object
                      properties:
                        {{- range list "principals" "notPrincipals" "requestPrincipals" "notRequestPrincipals" "namespaces" "notNamespaces" "ipBlocks" "notIpBlocks" "remoteIpBlocks" "notRemoteIpBlocks" "serviceAccounts" "notServiceAccounts" }}
                        {{ . }}:
                          {{- include "ambit-base.strings" $ | nindent 26 }}
                        {{- end }}
              to:
                type: array
                items:
                  type: object
                  properties:
                    operation:
                      type: object
                      properties:
                        {{- range list "hosts" "notHosts" "ports" "notPorts" "methods" "notMethods" "paths" "notPaths" }}
                        {{ . }}:
                          {{- include "ambit-base.strings" $ | nindent 26 }}
                        {{- end }}
              when:
                type: array
                items:
                  type: object
                  required: [key]
                  properties:
                    key:
                      type: string
                    values:
                      {{- include "ambit-base.strings" . | nindent 22 }}
                    notValues:
                      {{- include "ambit-base.strings" . | nindent 22 }}
    status:
      type: object
      x-kubernetes-preserve-unknown-fields: true
{{- end }}

{{/* PeerAuthentication spec (istio.io/api security/v1beta1/peer_authentication.proto). */}}
{{- define "ambit-base.peerAuthenticationSchema" -}}
openAPIV3Schema:
  type: object
  properties:
    spec:
      type: object
      properties:
        selector:
          {{- include "ambit-base.selector" . | nindent 10 }}
        mtls:
          type: object
          properties:
            mode:
              type: string
              enum: [UNSET, DISABLE, PERMISSIVE, STRICT]
        portLevelMtls:
          type: object
          additionalProperties:
            type: object
            properties:
              mode:
                type: string
                enum: [UNSET, DISABLE, PERMISSIVE, STRICT]
    status:
      type: object
      x-kubernetes-preserve-unknown-fields: true
{{- end }}

{{/* A minimal Gateway API CRD: structural, spec and status preserved. */}}
{{- define "ambit-base.gatewayApiCrd" -}}
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {{ .plural }}.gateway.networking.k8s.io
  {{- include "ambit-base.crdMetadata" .root | nindent 2 }}
spec:
  group: gateway.networking.k8s.io
  names:
    kind: {{ .kind }}
    listKind: {{ .kind }}List
    plural: {{ .plural }}
    singular: {{ lower .kind }}
    categories: [gateway-api]
  scope: {{ .scope }}
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
{{- end }}
