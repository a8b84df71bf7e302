{{/* The chart name, or nameOverride. */}}
{{- define "fast-launch-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object name prefix: fullnameOverride, else the release name (plus the chart name unless
the release name contains it). */}}
{{- define "fast-launch-exporter.fullname" -}}
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

{{- define "fast-launch-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "fast-launch-exporter.labels" -}}
helm.sh/chart: {{ include "fast-launch-exporter.chart" . }}
{{ include "fast-launch-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fast-launch-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of every object with the map `extra` added (`dict "root" $ "extra" ...`); a key in
both takes `extra`'s value, so no key is written twice. */}}
{{- define "fast-launch-exporter.labelsWith" -}}
{{- $labels := include "fast-launch-exporter.labels" .root | fromYaml }}
{{- toYaml (mergeOverwrite $labels (.extra | default dict)) }}
{{- end }}

{{/* The pods' labels the workload, Service, NetworkPolicy and PodDisruptionBudget select by. */}}
{{- define "fast-launch-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fast-launch-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: exporter
{{- end }}

{{- define "fast-launch-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fast-launch-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the existing ServiceAccount to use (serviceAccount.create is false)" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository:tag (tag default appVersion), or repository@digest. */}}
{{- define "fast-launch-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "fast-launch-exporter.configMapName" -}}
{{- .Values.existingConfigMap | default (printf "%s-config" (include "fast-launch-exporter.fullname" .)) }}
{{- end }}

{{/* Whether the workload is a sharded StatefulSet. */}}
{{- define "fast-launch-exporter.sharded" -}}
{{- if gt (int .Values.sharding.shards) 1 }}true{{ end }}
{{- end }}

{{/* Whether the exporter serves HTTPS (a web config with TLS). */}}
{{- define "fast-launch-exporter.https" -}}
{{- if and .Values.webConfig.existingSecret .Values.webConfig.tls }}true{{ end }}
{{- end }}

{{/* A probe of path $path (httpGet, HTTPS and the probe user's header with web auth; tcpSocket
when webConfig.probeType says so). */}}
{{- define "fast-launch-exporter.probe" -}}
{{- $root := .root }}
{{- $web := $root.Values.webConfig }}
{{- if and $web.existingSecret (eq $web.probeType "tcpSocket") }}
tcpSocket:
  port: http-metrics
{{- else }}
httpGet:
  path: {{ .path }}
  port: http-metrics
  {{- if include "fast-launch-exporter.https" $root }}
  scheme: HTTPS
  {{- end }}
  {{- if and $web.existingSecret $web.probeBasicAuth.username }}
  httpHeaders:
    - name: Authorization
      value: {{ printf "Basic %s" (printf "%s:%s" $web.probeBasicAuth.username $web.probeBasicAuth.password | b64enc) | quote }}
  {{- end }}
{{- end }}
periodSeconds: {{ .period }}
{{- if $web.existingSecret }}
# TLS handshakes and bcrypt checks take longer than the default second.
timeoutSeconds: 5
{{- end }}
failureThreshold: 3
{{- end }}
