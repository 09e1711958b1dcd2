{{/* Names, labels and the RBAC rules every mode shares. */}}

{{- define "harper-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "harper-operator.fullname" -}}
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

{{- define "harper-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "harper-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "harper-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "harper-operator.labels" -}}
helm.sh/chart: {{ include "harper-operator.chart" . }}
{{ include "harper-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: harper-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
"true" when the chart renders the HarperCluster and HarperNode CRDs (templates/crds/), else "". crds.create
defaults to true, also when the values carry no crds key at all: `helm upgrade --reuse-values` from chart 0.1.0
reuses that release's values, which had none.
*/}}
{{- define "harper-operator.crds.create" -}}
{{- $crds := .Values.crds | default dict }}
{{- if or (not (hasKey $crds "create")) $crds.create }}true{{ end }}
{{- end }}

{{- define "harper-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "harper-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "harper-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The security context of the operator's pod and of the chart's test pod. The uid/gid 65532 is the image's own
USER (operator/Dockerfile); runAsArbitraryUser leaves the uid (and gid, and fsGroup) to the platform, e.g.
OpenShift's restricted SCCs, which assign one from the namespace's range. The rest holds either way.
*/}}
{{- define "harper-operator.podSecurityContext" -}}
runAsNonRoot: true
{{- if not .Values.runAsArbitraryUser }}
runAsUser: 65532
runAsGroup: 65532
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "harper-operator.containerSecurityContext" -}}
runAsNonRoot: true
{{- if not .Values.runAsArbitraryUser }}
runAsUser: 65532
runAsGroup: 65532
{{- end }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "harper-operator.peeringName" -}}
{{- default (include "harper-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
The rules the operator needs on its own resources, in every namespace it serves (a ClusterRole
when it serves all of them, a Role per namespace otherwise). Kopf watches (list+watch) both kinds
and merge/JSON-patches them for its finalizer and its annotation-stored progress; the operator's
own client reads a cluster (get) when a node changes, annotates it (patch) and writes both
kinds' .status through the status subresource (patch). Secrets: get only, by the name a resource
gives (credentials.secretRef, tls.caSecretRef); never list or watch. Events: Kopf posts core v1
Events (POST, never PATCH; no events.k8s.io).
*/}}
{{- define "harper-operator.namespacedRules" -}}
- apiGroups: ["harperoperator.dev"]
  resources: ["harperclusters", "harpernodes"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["harperoperator.dev"]
  resources: ["harperclusters/status", "harpernodes/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rbac.provisioning }}
{{- /*
Provisioning (HarperCluster spec.instances): the operator writes a StatefulSet, two Services, a
PodDisruptionBudget, one HarperNode per pod, the cluster's certificate authority (Secret NAME-ca, created once,
never replaced), the pods' certificates (Secret NAME-tls, applied) and, when the cluster names no Secret, its admin
Secret (created once, never replaced; patched only to release it on deletionPolicy Retain). Pods are deleted one at a time for
rolling changes and restarts, and labelled in or out of the client Service (a leaving pod leaves it before its data
is confirmed elsewhere). A scaled-down member's volume claim is marked, then deleted, only once its data was proven
on the members that stay (docs/safety.md). Kubernetes' garbage collector deletes the rest through owner references.
Secrets are still read only when labelled harperoperator.dev/readable=true. With spec.tls.issuerRef, one cert-manager
Certificate per pod (server-side apply: create and patch); harmless where cert-manager is not installed.
*/}}
- apiGroups: ["harperoperator.dev"]
  resources: ["harpernodes"]
  verbs: ["create", "delete"]
{{- /* Owner references with blockOwnerDeletion, where OwnerReferencesPermissionEnforcement is on (OpenShift). */}}
- apiGroups: ["harperoperator.dev"]
  resources: ["harperclusters/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "patch", "delete"]
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["create", "patch"]
{{- end }}
{{- end }}
