{{/* The release's resources are named after it. */}}
{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.role }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Refuse values that would deploy something broken. */}}
{{- define "sluice.validate" -}}
{{- if not (has .Values.role (list "source" "sink")) -}}
{{- fail (printf "role must be source or sink, not %q" .Values.role) -}}
{{- end -}}
{{- if not (contains "${SLUICE_HTTP}" .Values.pipeline) -}}
{{- fail "pipeline: set http.listen to ${SLUICE_HTTP}, so that the probes and Prometheus reach the port the chart opens" -}}
{{- end -}}
{{- if and (eq .Values.role "source") (gt (int .Values.replicas) 1) (not (contains "EFFECTIVELY_ONCE" .Values.pipeline)) -}}
{{- fail "replicas: a source's extra replicas wait as standbys only under EFFECTIVELY_ONCE (processingGuarantees), where one instance holds the progress topic; otherwise they would fail on the slot, or publish twice" -}}
{{- end -}}
{{- if and .Values.stateDir.existingClaim (gt (int .Values.replicas) 1) -}}
{{- fail "stateDir.existingClaim: one claim cannot hold the state of several replicas; give each release one replica, or keep no state file" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (eq .Values.role "source") -}}
{{- fail "autoscaling is for sinks: a source has one active replica, and more only wait as standbys" -}}
{{- end -}}
{{- end -}}
