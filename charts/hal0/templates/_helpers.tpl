{{/*
Names and labels. Every object is named after the release, so several releases share a cluster:
<release>-hal0-<component>, or <release>-<component> when the release name contains "hal0"
(release hal0 gives hal0-controller, hal0-gateway, ... as deploy/ does).
*/}}

{{- define "hal0.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name, at most 40 characters so "-device-plugin-igpu" still fits 63. */}}
{{- define "hal0.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hal0.controllerName" -}}
{{ include "hal0.fullname" . }}-controller
{{- end }}

{{- define "hal0.gatewayName" -}}
{{ include "hal0.fullname" . }}-gateway
{{- end }}

{{/* Labels selecting one component of this release: add app.kubernetes.io/component. */}}
{{- define "hal0.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hal0.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/* Labels of every object of the chart. */}}
{{- define "hal0.labels" -}}
{{ include "hal0.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The hal0 image: image.repository (required), tag image.tag or the chart's appVersion. */}}
{{- define "hal0.image" -}}
{{- $repo := required `image.repository is required: the hal0 image your nodes pull (docs/kubernetes.md, "The image")` .Values.image.repository }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
