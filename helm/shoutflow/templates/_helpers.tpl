{{/*
Names and labels shared by every template, in the prometheus-community style.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "shoutflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name for every object: fullnameOverride, or the release
name (when it already contains the chart name) or release-chart. Truncated to
63 characters (DNS label limit); objects that add a suffix truncate further.
*/}}
{{- define "shoutflow.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "shoutflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "shoutflow.labels" -}}
helm.sh/chart: {{ include "shoutflow.chart" . }}
{{ include "shoutflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: shoutflow
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select this release's objects (immutable in selectors). */}}
{{- define "shoutflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoutflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of the shoutflowd pods. */}}
{{- define "shoutflow.nodeSelectorLabels" -}}
{{ include "shoutflow.selectorLabels" . }}
app.kubernetes.io/component: node
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "shoutflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shoutflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The shoutflowd image reference. */}}
{{- define "shoutflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The headless Service that gives each node its DNS name; its name is part of
SHOUTFLOW_ADVERTISE_HOST.
*/}}
{{- define "shoutflow.headlessName" -}}
{{- printf "%s-headless" (include "shoutflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the development PostgreSQL (postgresql.enabled). */}}
{{- define "shoutflow.postgresqlName" -}}
{{- printf "%s-postgresql" (include "shoutflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels selecting the development PostgreSQL. */}}
{{- define "shoutflow.postgresqlSelectorLabels" -}}
{{ include "shoutflow.selectorLabels" . }}
app.kubernetes.io/component: database
{{- end }}

{{/* The Secret holding the database URL, and its key. */}}
{{- define "shoutflow.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-database" (include "shoutflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "shoutflow.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else }}
{{- print "database-url" }}
{{- end }}
{{- end }}

{{/* Pod and container security contexts shared by every workload. */}}
{{- define "shoutflow.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "shoutflow.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}
