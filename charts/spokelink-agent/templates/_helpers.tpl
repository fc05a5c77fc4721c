{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "spokelink-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "spokelink-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "spokelink-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spokelink-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* What the Deployment, its Services, PDB and NetworkPolicy select: the pods, never the helm test pod. */}}
{{- define "spokelink-agent.podSelectorLabels" -}}
{{ include "spokelink-agent.selectorLabels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{/* Labels of every object but the component; objects add their own app.kubernetes.io/component. */}}
{{- define "spokelink-agent.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "spokelink-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spokelink
{{- end }}

{{- define "spokelink-agent.labels" -}}
{{ include "spokelink-agent.commonLabels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "spokelink-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spokelink-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spokelink-agent.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Secret with the join token, and its key. */}}
{{- define "spokelink-agent.joinSecretName" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.name }}{{ else }}{{ printf "%s-join" (include "spokelink-agent.fullname" . | trunc 58 | trimSuffix "-") }}{{ end }}
{{- end }}

{{- define "spokelink-agent.joinKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.key }}{{ else }}join-token{{ end }}
{{- end }}

{{- define "spokelink-agent.caConfigMapName" -}}
{{- if .Values.ca.existingConfigMap }}{{ .Values.ca.existingConfigMap }}{{ else }}{{ printf "%s-ca" (include "spokelink-agent.fullname" . | trunc 60 | trimSuffix "-") }}{{ end }}
{{- end }}

{{- define "spokelink-agent.caKey" -}}
{{- if .Values.ca.existingConfigMap }}{{ .Values.ca.key }}{{ else }}ca.crt{{ end }}
{{- end }}

{{- define "spokelink-agent.hasCa" -}}
{{- if or .Values.ca.pem .Values.ca.existingConfigMap }}true{{ end }}
{{- end }}

{{- define "spokelink-agent.metricsName" -}}
{{- printf "%s-metrics" (include "spokelink-agent.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "spokelink-agent.validate" -}}
{{- if and .Values.joinToken .Values.existingSecret.name }}
{{- fail "joinToken and existingSecret.name exclude each other: the join token comes from one of them" }}
{{- end }}
{{- if and .Values.ca.pem .Values.ca.existingConfigMap }}
{{- fail "ca.pem and ca.existingConfigMap exclude each other" }}
{{- end }}
{{- range .Values.readOnly }}
{{- if not (hasKey $.Values.upstreams .) }}
{{- fail (printf "readOnly: %q is not one of the upstreams (%s)" . (keys $.Values.upstreams | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metricsService.enabled) }}
{{- fail "serviceMonitor.enabled needs metricsService.enabled" }}
{{- end }}
{{- end }}
