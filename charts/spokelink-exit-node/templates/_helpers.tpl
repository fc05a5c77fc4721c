{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "spokelink-exit-node.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "spokelink-exit-node.fullname" -}}
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

{{- define "spokelink-exit-node.adminName" -}}
{{- printf "%s-admin" (include "spokelink-exit-node.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "spokelink-exit-node.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spokelink-exit-node.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* What the Deployment, its Services, PDB and NetworkPolicy select: the pods, never the helm test pod. */}}
{{- define "spokelink-exit-node.podSelectorLabels" -}}
{{ include "spokelink-exit-node.selectorLabels" . }}
app.kubernetes.io/component: exit-node
{{- end }}

{{/* Labels of every object but the component; objects add their own app.kubernetes.io/component. */}}
{{- define "spokelink-exit-node.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "spokelink-exit-node.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spokelink
{{- end }}

{{- define "spokelink-exit-node.labels" -}}
{{ include "spokelink-exit-node.commonLabels" . }}
app.kubernetes.io/component: exit-node
{{- end }}

{{- define "spokelink-exit-node.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spokelink-exit-node.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spokelink-exit-node.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the spokes file, and its key. */}}
{{- define "spokelink-exit-node.spokesSecretName" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.name }}{{ else }}{{ printf "%s-spokes" (include "spokelink-exit-node.fullname" . | trunc 56 | trimSuffix "-") }}{{ end }}
{{- end }}

{{- define "spokelink-exit-node.spokesKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.key }}{{ else }}spokes.yaml{{ end }}
{{- end }}

{{/*
The spokes file's text as the Secret holds it: `spokes` verbatim when it is a string (--set-file keeps comments),
else the list rendered under a "spokes" key.
*/}}
{{- define "spokelink-exit-node.spokesFile" -}}
{{- if kindIs "string" .Values.spokes }}
{{- .Values.spokes }}
{{- else }}
{{- dict "spokes" .Values.spokes | toYaml }}
{{- end }}
{{- end }}

{{/*
The spokes the chart makes Services for, as JSON: [{"name": "orion-aws", "ports": [{"upstream": "prometheus",
"port": 19090}]}]. Read from `spokes` (text or list) or, with existingSecret, from existingSecret.spokes.
Fails with one line when a spoke cannot be served through a Service.
*/}}
{{- define "spokelink-exit-node.spokeList" -}}
{{- $out := list }}
{{- if .Values.existingSecret.name }}
{{- if and .Values.spokes (ne (toString .Values.spokes) "") }}
{{- fail "spokes and existingSecret.name exclude each other: the spokes file comes from one of them" }}
{{- end }}
{{- range $i, $spoke := .Values.existingSecret.spokes }}
{{- $ports := list }}
{{- range $j, $port := $spoke.ports }}
{{- $ports = append $ports (dict "upstream" (printf "port%d" $j) "port" (int $port) "host" "") }}
{{- end }}
{{- $out = append $out (dict "name" $spoke.name "ports" $ports) }}
{{- end }}
{{- else }}
{{- $list := .Values.spokes }}
{{- if kindIs "string" .Values.spokes }}
{{- $parsed := fromYaml .Values.spokes }}
{{- if hasKey $parsed "Error" }}
{{- fail (printf "spokes: not a YAML spokes file: %s" (get $parsed "Error")) }}
{{- end }}
{{- $list = default list (get $parsed "spokes") }}
{{- end }}
{{- if not (kindIs "slice" $list) }}
{{- fail "spokes: expected a list of spokes (or the spokes file's text with a \"spokes:\" list)" }}
{{- end }}
{{- range $i, $spoke := $list }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" (toString $spoke.name)) }}
{{- fail (printf "spokes[%d].name: expected a DNS-1123 label, got %q" $i (toString $spoke.name)) }}
{{- end }}
{{- $ports := list }}
{{- range $j, $port := (default list $spoke.ports) }}
{{- $listen := toString $port.listen }}
{{- $portText := regexFind "[0-9]+$" $listen }}
{{- if not (regexMatch "^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]]+):[0-9]{1,5}$" $listen) }}
{{- fail (printf "spokes[%d].ports[%d].listen: expected \"host:port\", got %q" $i $j $listen) }}
{{- end }}
{{- $host := trimSuffix (printf ":%s" $portText) $listen }}
{{- if or (hasPrefix "127." $host) (eq $host "localhost") (eq $host "[::1]") }}
{{- fail (printf "spokes[%d].ports[%d].listen: %s is loopback, which the spoke's Service cannot reach; listen on 0.0.0.0:%s" $i $j $listen $portText) }}
{{- end }}
{{- $ports = append $ports (dict "upstream" (toString $port.upstream) "port" (atoi $portText) "host" $host) }}
{{- end }}
{{- $out = append $out (dict "name" $spoke.name "ports" $ports) }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Service name of a spoke: (dict "root" $ "name" "orion-aws"). */}}
{{- define "spokelink-exit-node.spokeServiceName" -}}
{{- $name := printf "%s%s" .root.Values.spokeServices.prefix .name }}
{{- if gt (len $name) 63 }}
{{- fail (printf "spokeServices.prefix + spoke name %q is longer than the 63 characters a Service name allows" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/* "files", "auto" or "none". */}}
{{- define "spokelink-exit-node.tlsMode" -}}
{{- if and .Values.tls.existingSecret .Values.autoTLS.enabled }}
{{- fail "tls.existingSecret and autoTLS.enabled exclude each other: set autoTLS.enabled=false to use the Secret" }}
{{- else if .Values.tls.existingSecret }}files
{{- else if .Values.autoTLS.enabled }}auto
{{- else }}none
{{- end }}
{{- end }}

{{/* DNS names for the auto-TLS server certificate. */}}
{{- define "spokelink-exit-node.autoTlsHosts" -}}
{{- $svc := include "spokelink-exit-node.fullname" . }}
{{- $hosts := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- if .Values.ingress.enabled }}{{ $hosts = append $hosts .Values.ingress.host }}{{ end }}
{{- concat $hosts .Values.autoTLS.hosts | uniq | join "," }}
{{- end }}

{{- define "spokelink-exit-node.autoTlsClaimName" -}}
{{- default (printf "%s-tls" (include "spokelink-exit-node.fullname" . | trunc 59 | trimSuffix "-")) .Values.autoTLS.persistence.existingClaim }}
{{- end }}

{{/* The /v1/sd target template: each spoke's Service, on the port number it listens on. */}}
{{- define "spokelink-exit-node.sdTarget" -}}
{{- printf "%s{spoke}.%s.svc:{port}" .Values.spokeServices.prefix .Release.Namespace }}
{{- end }}

{{/* A Service port name from an upstream name: IANA service names are at most 15 of [a-z0-9-]. */}}
{{- define "spokelink-exit-node.portName" -}}
{{- . | lower | replace "_" "-" | trunc 15 | trimSuffix "-" | trimPrefix "-" }}
{{- end }}

{{/* Checks of combinations the schema cannot express; included once, from the Deployment. */}}
{{- define "spokelink-exit-node.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.spokeServices.selectorless) }}
{{- fail "replicas > 1 needs spokeServices.selectorless=true: a spoke's Service must reach the replica holding its session (EndpointSlices kept by the exit-node)" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) .Values.autoTLS.enabled }}
{{- fail "replicas > 1 cannot use autoTLS: each replica would make its own CA; use tls.existingSecret" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.hubSelector.podSelector) (not .Values.networkPolicy.hubSelector.namespaceSelector) }}
{{- fail "networkPolicy.hubSelector needs a podSelector or a namespaceSelector: it names the hub Prometheus" }}
{{- end }}
{{- $names := dict }}
{{- range (include "spokelink-exit-node.spokeList" . | fromJsonArray) }}
{{- $svc := include "spokelink-exit-node.spokeServiceName" (dict "root" $ "name" .name) }}
{{- if or (hasKey $names $svc) (eq $svc (include "spokelink-exit-node.fullname" $)) (eq $svc (include "spokelink-exit-node.adminName" $)) }}
{{- fail (printf "spoke Service %q collides with another Service of this release; set spokeServices.prefix" $svc) }}
{{- end }}
{{- $_ := set $names $svc true }}
{{- range $j, $port := .ports }}
{{- if and (gt $j 0) (eq (int $port.port) (int $.Values.spokeServices.port)) }}
{{- fail (printf "spoke %s: port %d is spokeServices.port, which stands for the spoke's first port; listen elsewhere or change spokeServices.port" .name (int $port.port)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* URL of /v1/sd on the admin Service. */}}
{{- define "spokelink-exit-node.sdUrl" -}}
{{- printf "http://%s.%s.svc:%d/v1/sd" (include "spokelink-exit-node.adminName" .) .Release.Namespace (int .Values.adminService.port) }}
{{- end }}

{{/* The ScrapeConfig spec (rendered by scrapeconfig.yaml and printed by NOTES.txt). */}}
{{- define "spokelink-exit-node.scrapeConfigSpec" -}}
httpSDConfigs:
  - url: {{ include "spokelink-exit-node.sdUrl" . }}
    refreshInterval: 30s
metricsPath: /federate
honorLabels: true
scrapeInterval: {{ .Values.scrapeConfig.interval }}
params:
  match[]:
    {{- range .Values.scrapeConfig.match }}
    - {{ . | quote }}
    {{- end }}
relabelings:
  - sourceLabels: [__meta_spokelink_upstream]
    regex: {{ .Values.scrapeConfig.upstream }}
    action: keep
  - sourceLabels: [__meta_spokelink_spoke]
    targetLabel: spoke
  - sourceLabels: [__meta_spokelink_upstream]
    targetLabel: upstream
  - action: labelmap
    regex: __meta_spokelink_label_(.+)
{{- end }}
