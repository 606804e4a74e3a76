{{/* Chart name, overridable with nameOverride. */}}
{{- define "triton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "triton.fullname" -}}
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

{{/* Chart label value: name-version. */}}
{{- define "triton.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name and instance only, never user labels. */}}
{{- define "triton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "triton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Platform labels the seed platform selects on: app, env, release. */}}
{{- define "triton.platformLabels" -}}
app: {{ include "triton.name" . }}
env: {{ .Values.environment | quote }}
release: {{ .Release.Name }}
{{- end }}

{{/*
What the ServiceMonitor selects Services by: labels Argo CD's label tracking leaves alone. Argo CD
sets app.kubernetes.io/instance on every object it manages to the Application's name (K3), so the
instance label is not part of it; `release` (the platform label) tells releases apart instead.
*/}}
{{- define "triton.serviceMonitorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "triton.name" . }}
app.kubernetes.io/component: inference-server
release: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the helm test pod the NetworkPolicy admits; none that Argo CD rewrites. Its name differs
from the server's, so no selector of the release (Deployment, Service, PDB, HPA) picks the test pod.
*/}}
{{- define "triton.helmTestSelectorLabels" -}}
app.kubernetes.io/name: {{ include "triton.name" . }}-test
app.kubernetes.io/component: helm-test
release: {{ .Release.Name }}
{{- end }}

{{/* Pod template labels: selector and platform labels win over podLabels, which win over commonLabels. */}}
{{- define "triton.podLabels" -}}
{{- $fixed := merge (include "triton.selectorLabels" . | fromYaml) (include "triton.platformLabels" . | fromYaml) }}
{{- toYaml (merge $fixed (deepCopy .Values.podLabels) (deepCopy .Values.commonLabels)) }}
{{- end }}

{{/* Standard and platform labels for every object's metadata. */}}
{{- define "triton.standardLabels" -}}
helm.sh/chart: {{ include "triton.chart" . }}
{{ include "triton.selectorLabels" . }}
app.kubernetes.io/version: {{ include "triton.versionLabel" . | quote }}
app.kubernetes.io/component: inference-server
app.kubernetes.io/part-of: tritonops
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{ include "triton.platformLabels" . }}
{{- end }}

{{/* Labels for every object's metadata: the standard ones win over commonLabels (never a duplicate key). */}}
{{- define "triton.labels" -}}
{{- toYaml (merge (include "triton.standardLabels" . | fromYaml) (deepCopy .Values.commonLabels)) }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "triton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "triton.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference: repository@digest when a digest is set, else repository:tag.
Usage: {{ include "triton.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
*/}}
{{- define "triton.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .defaultTag .image.tag) }}
{{- end }}
{{- end }}

{{/* The Triton image tag the pods run: image.tag, else the chart's appVersion. */}}
{{- define "triton.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
app.kubernetes.io/version: the image tag the pods run, as a label value (at most 63 characters of
[A-Za-z0-9._-], alphanumeric at both ends). A pinned digest cannot be one ("sha256:" and 64 hex
digits is 71 characters, with a colon), so the tag names the version even then; the digest is in
the pod's image reference and NOTES.txt.
*/}}
{{- define "triton.versionLabel" -}}
{{- regexReplaceAll "[^-A-Za-z0-9_.]" (include "triton.imageTag" .) "-" | trunc 63 | trimAll "-_." }}
{{- end }}

{{/* The Triton image reference (tag defaults to appVersion). */}}
{{- define "triton.image" -}}
{{- include "triton.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/* Name of the Secret holding the repository API key. */}}
{{- define "triton.repositoryApiSecretName" -}}
{{- default (printf "%s-repository-api" (include "triton.fullname" .)) .Values.repositoryApi.restricted.existingSecret }}
{{- end }}

{{/*
Short hash of the NFS export (server:path) for the names of the volume and claim the chart creates.
A PersistentVolume's volume source and a claim's volumeName cannot change after creation, so a
changed export must be new objects: the Deployment then rolls onto the new claim.
*/}}
{{- define "triton.nfsExportHash" -}}
{{- printf "%s:%s" .Values.modelRepository.pvc.nfs.server .Values.modelRepository.pvc.nfs.path | sha256sum | trunc 8 }}
{{- end }}

{{/* Name of the NFS PersistentVolume the chart creates: cluster-scoped, so named after the namespace too. */}}
{{- define "triton.nfsVolumeName" -}}
{{- printf "%s-%s-models" .Release.Namespace (include "triton.fullname" .) | trunc 54 | trimSuffix "-" }}-{{ include "triton.nfsExportHash" . }}
{{- end }}

{{/* Name of the model-repository PVC: the existing claim, or the created one (named after its NFS export). */}}
{{- define "triton.claimName" -}}
{{- if .Values.modelRepository.pvc.existingClaim }}
{{- .Values.modelRepository.pvc.existingClaim }}
{{- else }}
{{- printf "%s-models" (include "triton.fullname" .) | trunc 54 | trimSuffix "-" }}-{{ include "triton.nfsExportHash" . }}
{{- end }}
{{- end }}

{{/* Where the scripts ConfigMap is mounted in the Triton container. */}}
{{- define "triton.scriptsDir" -}}
/opt/tritonops
{{- end }}

{{/* Where the repository API key Secret is mounted. */}}
{{- define "triton.repositoryApiKeyDir" -}}
/var/run/secrets/tritonops/repository-api
{{- end }}

{{/* The repository API key file inside a container (the Secret's key, mounted under triton.repositoryApiKeyDir). */}}
{{- define "triton.repositoryApiKeyFile" -}}
{{- printf "%s/%s" (include "triton.repositoryApiKeyDir" .) .Values.repositoryApi.restricted.secretKey }}
{{- end }}

{{/* The pod volume holding the repository API key, from its Secret (nothing when the API is open). */}}
{{- define "triton.repositoryApiKeyVolume" -}}
{{- if .Values.repositoryApi.restricted.enabled }}
- name: repository-api-key
  secret:
    secretName: {{ include "triton.repositoryApiSecretName" . }}
    defaultMode: 0400
    items:
      - key: {{ .Values.repositoryApi.restricted.secretKey }}
        path: {{ .Values.repositoryApi.restricted.secretKey }}
{{- end }}
{{- end }}

{{/* The container mount of the repository API key (nothing when the API is open). */}}
{{- define "triton.repositoryApiKeyMount" -}}
{{- if .Values.repositoryApi.restricted.enabled }}
- name: repository-api-key
  mountPath: {{ include "triton.repositoryApiKeyDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
The pod volume `models`: the repository's claim (pvc) or the downloaded emptyDir; nothing for the
objectStore and image sources, which no volume holds. The Deployment and the promotion Job mount the
same claim; `readOnly` is the pod's choice (Triton's follows modelRepository.pvc.readOnly, the Job writes).
Usage: {{ include "triton.modelRepositoryVolume" (dict "readOnly" .Values.modelRepository.pvc.readOnly "context" .) }}
*/}}
{{- define "triton.modelRepositoryVolume" -}}
{{- $repo := .context.Values.modelRepository }}
{{- if $repo.pvc.enabled }}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "triton.claimName" .context }}
    readOnly: {{ .readOnly }}
{{- else if $repo.download.enabled }}
- name: models
  emptyDir:
    sizeLimit: {{ $repo.download.sizeLimit }}
{{- end }}
{{- end }}

{{/*
The container mount of the `models` volume at modelRepository.path (with pvc.subPath); a downloaded
repository is always read-only.
Usage: {{ include "triton.modelRepositoryMount" (dict "readOnly" true "context" .) }}
*/}}
{{- define "triton.modelRepositoryMount" -}}
{{- $repo := .context.Values.modelRepository }}
{{- if $repo.pvc.enabled }}
- name: models
  mountPath: {{ $repo.path }}
  readOnly: {{ .readOnly }}
  {{- with $repo.pvc.subPath }}
  subPath: {{ . }}
  {{- end }}
{{- else if $repo.download.enabled }}
- name: models
  mountPath: {{ $repo.path }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Path of the committed-state record inside the container. */}}
{{- define "triton.committedStatePath" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.modelRepository.path) .Values.server.committedState.file }}
{{- end }}

{{/* The pod's local copy of the last good committed state (on its own /tmp emptyDir): written by the launcher, read by the readiness check when the shared repository does not answer. */}}
{{- define "triton.committedStateCachePath" -}}
/tmp/tritonops/committed-state.json
{{- end }}

{{/* Grace period: the value when set, else preStop sleep + exit timeout + 15 s. */}}
{{- define "triton.terminationGracePeriodSeconds" -}}
{{- $minimum := add .Values.rollout.preStopSleepSeconds .Values.server.exitTimeoutSeconds }}
{{- if kindIs "invalid" .Values.rollout.terminationGracePeriodSeconds }}
{{- add $minimum 15 }}
{{- else }}
{{- .Values.rollout.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Startup budget in seconds: how long the startup probe lets the startup models load. */}}
{{- define "triton.startupBudgetSeconds" -}}
{{- mul .Values.probes.startup.periodSeconds .Values.probes.startup.failureThreshold }}
{{- end }}

{{/* Progress deadline: the value when set, else the startup budget + 600 s for pulling the image. */}}
{{- define "triton.progressDeadlineSeconds" -}}
{{- if kindIs "invalid" .Values.rollout.progressDeadlineSeconds }}
{{- add (include "triton.startupBudgetSeconds" . | int) 600 }}
{{- else }}
{{- .Values.rollout.progressDeadlineSeconds }}
{{- end }}
{{- end }}

{{/* Where Triton downloads an object-store repository before loading it (its own emptyDir). */}}
{{- define "triton.objectStoreCacheDir" -}}
/var/lib/tritonops/object-store
{{- end }}

{{/*
One topology spread constraint over the pods of the same rollout.
Usage: {{ include "triton.topologySpreadConstraint" (dict "spread" .Values.topologySpread.zone "key" "topology.kubernetes.io/zone" "context" .) }}
*/}}
{{- define "triton.topologySpreadConstraint" -}}
- maxSkew: {{ .spread.maxSkew }}
  topologyKey: {{ .key }}
  whenUnsatisfiable: {{ .spread.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "triton.selectorLabels" .context | nindent 6 }}
  # Count only pods of the same rollout: old and new ReplicaSets are spread separately.
  matchLabelKeys:
    - pod-template-hash
{{- end }}

{{/* Number of model-repository sources switched on. */}}
{{- define "triton.repositorySourceCount" -}}
{{- $count := 0 }}
{{- range $source := list "pvc" "objectStore" "image" "download" }}
{{- if (get $.Values.modelRepository $source).enabled }}
{{- $count = add1 $count }}
{{- end }}
{{- end }}
{{- $count }}
{{- end }}

{{/*
Render-time guards for combinations the schema cannot express. Every message starts with the value path.
Usage: {{ include "triton.validate" . }}
*/}}
{{- define "triton.validate" -}}
{{- $repo := .Values.modelRepository }}
{{- if ne (include "triton.repositorySourceCount" .) "1" }}
{{- fail "modelRepository: enable exactly one source of pvc, objectStore, image or download" }}
{{- end }}
{{- if $repo.pvc.enabled }}
{{- if and $repo.pvc.existingClaim $repo.pvc.nfs.server }}
{{- fail "modelRepository.pvc: set either existingClaim or nfs.server, not both" }}
{{- end }}
{{- if not (or $repo.pvc.existingClaim $repo.pvc.nfs.server) }}
{{- fail "modelRepository.pvc: set existingClaim, or nfs.server and nfs.path to create the volume" }}
{{- end }}
{{- if and $repo.pvc.nfs.server (not $repo.pvc.nfs.path) }}
{{- fail "modelRepository.pvc.nfs.path: required with nfs.server" }}
{{- end }}
{{- /* Only the default cluster domain is known here: a cluster configured with another one
    (kubelet clusterDomain) is not caught, and neither is a short in-cluster name such as
    nfs-dev.storage (service.namespace), which looks like any other host name. */}}
{{- $nfsServer := lower (trimSuffix "." $repo.pvc.nfs.server) }}
{{- if or (hasSuffix ".svc" $nfsServer) (hasSuffix ".cluster.local" $nfsServer) (eq $nfsServer "cluster.local") }}
{{- fail (printf "modelRepository.pvc.nfs.server: %q is a cluster DNS name, but the kubelet mounts NFS with the node's resolver, which does not resolve names ending in .svc or .cluster.local; use an IP address or a name the nodes' resolver knows" $repo.pvc.nfs.server) }}
{{- end }}
{{- end }}
{{- if and $repo.objectStore.enabled (not $repo.objectStore.uri) }}
{{- fail "modelRepository.objectStore.uri: required when objectStore is enabled (s3://, gs:// or as://)" }}
{{- end }}
{{- if and $repo.objectStore.enabled .Values.server.committedState.enabled }}
{{- fail "server.committedState.enabled: the committed state is read from a filesystem repository; set it to false with modelRepository.objectStore and list startup models in server.loadModels" }}
{{- end }}
{{- if and $repo.download.enabled (not $repo.download.artifacts) }}
{{- fail "modelRepository.download.artifacts: list at least one artifact when download is enabled" }}
{{- end }}
{{- if and .Values.server.committedState.enabled (ne .Values.server.modelControlMode "explicit") }}
{{- fail "server.committedState.enabled: needs server.modelControlMode=explicit (the committed models are passed as --load-model)" }}
{{- end }}
{{- if and .Values.server.loadModels (ne .Values.server.modelControlMode "explicit") }}
{{- fail "server.loadModels: --load-model needs server.modelControlMode=explicit" }}
{{- end }}
{{- $minimumGrace := add .Values.rollout.preStopSleepSeconds .Values.server.exitTimeoutSeconds }}
{{- if le (int (include "triton.terminationGracePeriodSeconds" .)) (int $minimumGrace) }}
{{- fail (printf "rollout.terminationGracePeriodSeconds: must exceed rollout.preStopSleepSeconds + server.exitTimeoutSeconds (%d), or in-flight requests are killed during rollouts" (int $minimumGrace)) }}
{{- end }}
{{- $startupBudget := include "triton.startupBudgetSeconds" . | int }}
{{- if le (include "triton.progressDeadlineSeconds" . | int) $startupBudget }}
{{- fail (printf "rollout.progressDeadlineSeconds: %d must exceed the startup budget, probes.startup.periodSeconds x failureThreshold (%d s), plus time to pull the image; or leave it unset (%d s + 600 s)" (include "triton.progressDeadlineSeconds" . | int) $startupBudget $startupBudget) }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if $pdb.enabled }}
{{- if eq (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail "podDisruptionBudget: set exactly one of minAvailable or maxUnavailable" }}
{{- end }}
{{- $replicas := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled }}
{{- if and (kindIs "float64" $pdb.minAvailable) (ge (int $pdb.minAvailable) (int $replicas)) }}
{{- fail (printf "podDisruptionBudget.minAvailable: %d would block every node drain with %d replica(s); lower it or raise replicaCount/autoscaling.minReplicas" (int $pdb.minAvailable) (int $replicas)) }}
{{- end }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if not (or .Values.autoscaling.queueTime.enabled .Values.autoscaling.cpu.enabled) }}
{{- fail "autoscaling: enable queueTime or cpu (or both) when autoscaling is enabled" }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas: must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if eq .Values.autoscaling.engine "keda" }}
{{- if not .Values.autoscaling.queueTime.enabled }}
{{- fail "autoscaling.queueTime.enabled: the KEDA ScaledObject scales on the queue-time query; set it true, or use autoscaling.engine=hpa" }}
{{- end }}
{{- if not .Values.autoscaling.keda.serverAddress }}
{{- fail "autoscaling.keda.serverAddress: required with autoscaling.engine=keda; the Prometheus URL KEDA queries (e.g. http://prometheus-operated.monitoring.svc:9090)" }}
{{- end }}
{{- /* KEDA parses threshold as a plain number: a quantity suffix (20k, 500m) would fail in KEDA, not here. */}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" (toString .Values.autoscaling.queueTime.targetAverageValue)) }}
{{- fail (printf "autoscaling.queueTime.targetAverageValue: KEDA's threshold is a plain number of microseconds; write %q without a quantity suffix" (toString .Values.autoscaling.queueTime.targetAverageValue)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.monitoring.serviceMonitor.enabled (not .Values.monitoring.releaseLabel) }}
{{- fail "monitoring.releaseLabel: set the release label your Prometheus selects (e.g. monitoring-prod)" }}
{{- end }}
{{- if and .Values.monitoring.serviceMonitor.enabled (not .Values.server.metrics.enabled) }}
{{- fail "monitoring.serviceMonitor.enabled: needs server.metrics.enabled=true, or there is nothing to scrape" }}
{{- end }}
{{- if and .Values.agent.enabled (not .Values.server.committedState.enabled) }}
{{- fail "agent.enabled: the agent converges every pod to the committed state, so it needs server.committedState.enabled=true; or set agent.enabled=false" }}
{{- end }}
{{- if and .Values.helmTest.enabled (not .Values.helmTest.model) }}
{{- fail "helmTest.model: name the model the helm test sends one smoke inference to, or set helmTest.enabled=false" }}
{{- end }}
{{- if and .Values.helmTest.enabled (not .Values.helmTest.request) }}
{{- fail "helmTest.request: give the KServe v2 request body for the smoke inference" }}
{{- end }}
{{- with .Values.repositoryApi.restricted }}
{{- if and $.Values.helmTest.enabled .enabled (has "inference" .protocols) }}
{{- fail "helmTest.enabled: the helm test's smoke inference carries no key, but repositoryApi.restricted.protocols restricts inference; set helmTest.enabled=false, or remove inference from repositoryApi.restricted.protocols" }}
{{- end }}
{{- end }}
{{- include "triton.validatePromotionJob" . }}
{{- end }}

{{/*
The KEDA query: the mean over this release's pods of each pod's queue time per request, in
microseconds. Per pod it is the prometheus-adapter rule's value (monitoring/prometheus-adapter), the
same floor on the denominator, so an idle pod counts as 0 rather than NaN; avg() makes it the one
series KEDA needs.
*/}}
{{- define "triton.kedaQuery" -}}
{{- $sel := printf "namespace=\"%s\", job=\"%s\"" .Release.Namespace (include "triton.fullname" .) -}}
avg(
  sum by (pod) (rate(nv_inference_queue_duration_us{ {{- $sel -}} }[2m]))
    / clamp_min(sum by (pod) (rate(nv_inference_request_success{ {{- $sel -}} }[2m])), 0.001)
)
{{- end }}

{{/* The tritonserver command line, built from values. */}}
{{- define "triton.serverArgs" -}}
- tritonserver
{{- if .Values.modelRepository.objectStore.enabled }}
- --model-repository={{ .Values.modelRepository.objectStore.uri }}
{{- else }}
- --model-repository={{ .Values.modelRepository.path }}
{{- end }}
- --model-control-mode={{ .Values.server.modelControlMode }}
{{- range .Values.server.loadModels }}
- --load-model={{ . }}
{{- end }}
- --strict-readiness={{ .Values.server.strictReadiness }}
- --exit-on-error={{ .Values.server.exitOnError }}
- --exit-timeout-secs={{ .Values.server.exitTimeoutSeconds }}
- --http-port={{ .Values.ports.http }}
- --grpc-port={{ .Values.ports.grpc }}
- --log-format={{ .Values.server.log.format }}
- --log-verbose={{ .Values.server.log.verbose }}
{{- with .Values.server.metrics }}
- --allow-metrics={{ .enabled }}
{{- if .enabled }}
- --metrics-port={{ $.Values.ports.metrics }}
- --allow-gpu-metrics={{ and .gpu $.Values.gpu.enabled }}
- --allow-cpu-metrics={{ .cpu }}
- --metrics-interval-ms={{ .intervalMs }}
{{- if .summaryLatencies }}
- --metrics-config=summary_latencies=true
- --metrics-config=summary_quantiles={{ .summaryQuantiles }}
{{- end }}
{{- end }}
{{- end }}
{{- if ne .Values.server.rateLimit.mode "off" }}
- --rate-limit={{ .Values.server.rateLimit.mode }}
{{- range .Values.server.rateLimit.resources }}
- --rate-limit-resource={{ .name }}:{{ .count }}{{ if not (kindIs "invalid" .device) }}:{{ .device }}{{ end }}
{{- end }}
{{- end }}
{{- if .Values.server.responseCache.enabled }}
- --cache-config=local,size={{ int64 .Values.server.responseCache.sizeBytes }}
{{- end }}
{{- range .Values.server.extraArgs }}
- {{ . }}
{{- end }}
{{- end }}

{{/* Launcher arguments: committed state and repository API key, then `--` and the server command line. */}}
{{- define "triton.launcherArgs" -}}
{{- if .Values.server.committedState.enabled }}
- --committed-state={{ include "triton.committedStatePath" . }}
- --state-cache={{ include "triton.committedStateCachePath" . }}
- --{{ if not .Values.server.committedState.verifyDigest }}no-{{ end }}verify-digest
- --repository={{ .Values.modelRepository.path }}
{{- end }}
{{- /* The pod's emptyDir volumes outlive container restarts: the launcher clears what an earlier run left. */}}
- --tmp-dir=/tmp
{{- if .Values.modelRepository.objectStore.enabled }}
- --object-store-cache={{ include "triton.objectStoreCacheDir" . }}
{{- end }}
{{- if .Values.repositoryApi.restricted.enabled }}
- --api-key-file={{ include "triton.repositoryApiKeyFile" . }}
- --api-header={{ .Values.repositoryApi.restricted.header }}
- --api-protocols={{ join "," .Values.repositoryApi.restricted.protocols }}
{{- end }}
- --
{{ include "triton.serverArgs" . }}
{{- end }}

{{/* Readiness check arguments: the HTTP port, the committed state and the static startup models. */}}
{{- define "triton.readinessCommand" -}}
- python3
- {{ include "triton.scriptsDir" . }}/ready.py
- --port={{ .Values.ports.http }}
- --timeout={{ .Values.probes.readiness.timeoutSeconds }}
{{- with .Values.server.committedState }}
{{- if .enabled }}
{{- if gt (mulf .readTimeoutSeconds 2) (float64 $.Values.probes.readiness.timeoutSeconds) }}
{{- fail (printf "server.committedState.readTimeoutSeconds: %v is more than half of probes.readiness.timeoutSeconds (%v); lower it or raise the probe timeout, so that the check keeps time to ask Triton" .readTimeoutSeconds $.Values.probes.readiness.timeoutSeconds) }}
{{- end }}
- --committed-state={{ include "triton.committedStatePath" $ }}
- --state-cache={{ include "triton.committedStateCachePath" $ }}
- --read-timeout={{ .readTimeoutSeconds }}
{{- end }}
{{- end }}
{{- range .Values.server.loadModels }}
- --model={{ . }}
{{- end }}
{{- end }}

{{/* The Prometheus `job` of the agent's metrics (the ServiceMonitor relabels its endpoint to it; the agent alerts select it). */}}
{{- define "triton.agentJob" -}}
{{- printf "%s-agent" (include "triton.fullname" .) }}
{{- end }}

{{/* The agent's arguments: the committed state, its own Triton over loopback, the repository API key and its timing. */}}
{{- define "triton.agentArgs" -}}
- --repository={{ .Values.modelRepository.path }}
- --committed-state={{ include "triton.committedStatePath" . }}
- --port={{ .Values.ports.http }}
- --metrics-address=0.0.0.0
- --metrics-port={{ .Values.ports.agentMetrics }}
- --interval={{ .Values.agent.intervalSeconds }}
- --read-timeout={{ .Values.agent.readTimeoutSeconds }}
- --load-timeout={{ .Values.agent.loadTimeoutSeconds }}
- --backoff-max={{ .Values.agent.backoffMaxSeconds }}
- --lock-stale-after={{ .Values.agent.lockStaleSeconds }}
- --narrow-after={{ .Values.agent.narrowAfterSeconds }}
- --fallback-marker={{ include "triton.readinessFallbackMarker" . }}
{{- if .Values.repositoryApi.restricted.enabled }}
- --api-key-file={{ include "triton.repositoryApiKeyFile" . }}
- --api-header={{ .Values.repositoryApi.restricted.header }}
{{- end }}
{{- end }}

{{/* The file the readiness check keeps beside the pod's local copy while it answers from that copy (ready.py); the agent exports it. */}}
{{- define "triton.readinessFallbackMarker" -}}
{{- printf "%s/readiness-fallback" (include "triton.committedStateCachePath" . | dir) }}
{{- end }}

{{/* Container security context shared by every container the chart runs. */}}
{{- define "triton.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Labels of the promotion Job's pod, which the NetworkPolicy admits; none that Argo CD rewrites. Its
name differs from the server's and it carries no instance label, so no selector of the release
(Deployment, Service, PDB, NetworkPolicy, spread) picks it, and this selector picks no Triton pod.
*/}}
{{- define "triton.promotionSelectorLabels" -}}
app.kubernetes.io/name: {{ include "triton.name" . | trunc 53 | trimSuffix "-" }}-promotion
app.kubernetes.io/component: promotion
release: {{ .Release.Name }}
{{- end }}

{{/* Metadata labels of the promotion objects (Job, its ServiceAccount, Role and RoleBinding): the standard ones, named and placed as the promotion's. */}}
{{- define "triton.promotionLabels" -}}
{{- toYaml (merge (include "triton.promotionSelectorLabels" . | fromYaml) (include "triton.labels" . | fromYaml)) }}
{{- end }}

{{/*
The promotion Job pod's labels: its selector and platform labels, then commonLabels. No chart or
image version: the Job's name carries a hash of its pod template, and a chart upgrade that changes
nothing the Job runs must not make a new Job.
*/}}
{{- define "triton.promotionPodLabels" -}}
{{- $fixed := merge (include "triton.promotionSelectorLabels" . | fromYaml) (include "triton.platformLabels" . | fromYaml) }}
{{- $_ := set $fixed "app.kubernetes.io/part-of" "tritonops" }}
{{- $_ = set $fixed "app.kubernetes.io/managed-by" .Release.Service }}
{{- toYaml (merge $fixed (deepCopy .Values.commonLabels)) }}
{{- end }}

{{/* Name of the promotion Job's ServiceAccount, Role and RoleBinding. */}}
{{- define "triton.promotionName" -}}
{{- printf "%s-promotion" (include "triton.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}

{{/*
Name of the promotion Job: <fullname>-promote-<model>-v<version>-<hash>, at most 63 characters of
[a-z0-9-] (the pods' job-name label takes 63). The readable part is cut to fit; the hash is of the
whole pod template. A Job's pod template cannot change, so any change to what it runs (model,
version, source, arguments, image, mounts) must be a new Job, not a failed upgrade or sync.
*/}}
{{- define "triton.promotionJobName" -}}
{{- $job := .Values.promotion.job }}
{{- $model := regexReplaceAll "[^a-z0-9-]+" (lower $job.model) "-" | trimAll "-" }}
{{- $readable := printf "%s-promote-%s-v%d" (include "triton.fullname" .) $model (int64 $job.version) | trunc 54 | trimSuffix "-" }}
{{- printf "%s-%s" $readable (include "triton.promotionPodTemplate" . | sha256sum | trunc 8) }}
{{- end }}

{{/* The `tritonops promote` arguments of the promotion Job: the replicas are the chart's Service, the repository and key are the pod's mounts. */}}
{{- define "triton.promotionArgs" -}}
{{- $job := .Values.promotion.job }}
- promote
- {{ $job.model | quote }}
- --version={{ int64 $job.version }}
- --service={{ include "triton.fullname" . }}
- --namespace={{ .Release.Namespace }}
- --wait-for-ready={{ $job.waitForReadySeconds }}
- --repository={{ .Values.modelRepository.path }}
{{- if .Values.repositoryApi.restricted.enabled }}
- --api-key-file={{ include "triton.repositoryApiKeyFile" . }}
- --api-header={{ .Values.repositoryApi.restricted.header }}
{{- end }}
{{- with $job.from }}
- {{ printf "--from=%s" . | quote }}
{{- end }}
- --load-timeout={{ $job.loadTimeoutSeconds }}
{{- range $job.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The promotion Job's pod template (metadata and spec). Hardened like Triton's pod; the ServiceAccount
token is mounted because discovery lists the Service's EndpointSlices.
*/}}
{{- define "triton.promotionPodTemplate" -}}
{{- $job := .Values.promotion.job }}
{{- $user := ternary .Values.securityContext.runAsUser $job.runAsUser (kindIs "invalid" $job.runAsUser) }}
{{- $group := ternary .Values.securityContext.runAsGroup $job.runAsGroup (kindIs "invalid" $job.runAsGroup) }}
metadata:
  labels:
    {{- include "triton.promotionPodLabels" . | nindent 4 }}
  {{- with $job.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  # Never restarted in place: a failed promotion already rolled every replica back (see backoffLimit).
  restartPolicy: Never
  serviceAccountName: {{ include "triton.promotionName" . }}
  # Discovery reads the Service's EndpointSlices with this token (the Role allows nothing else).
  automountServiceAccountToken: true
  terminationGracePeriodSeconds: {{ default (add (int $job.loadTimeoutSeconds) 30) $job.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: {{ $user }}
    runAsGroup: {{ $group }}
    # The key file is the Secret's, readable by this group.
    fsGroup: {{ $group }}
    seccompProfile:
      type: RuntimeDefault
  {{- with $job.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $job.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $job.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: promote
      image: {{ include "triton.imageRef" (dict "image" $job.image "defaultTag" "") }}
      imagePullPolicy: {{ $job.image.pullPolicy }}
      # A failed pod's termination message is its log's tail (`kubectl describe pod`, the Job's
      # events): the line that says why the promotion failed.
      terminationMessagePolicy: FallbackToLogsOnError
      command:
        - tritonops
      args:
        {{- include "triton.promotionArgs" . | nindent 8 }}
      # /tmp is the only writable folder besides the repository: HOME and the working folder.
      workingDir: /tmp
      env:
        - name: HOME
          value: /tmp
        - name: PYTHONDONTWRITEBYTECODE
          value: "1"
        # Each step's progress reaches the pod log as it happens.
        - name: PYTHONUNBUFFERED
          value: "1"
        {{- with $job.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      resources:
        {{- toYaml $job.resources | nindent 8 }}
      securityContext:
        {{- include "triton.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- include "triton.repositoryApiKeyMount" . | nindent 8 }}
        {{- /* Read-write: the promotion stages, commits and quarantines in the repository. */}}
        {{- include "triton.modelRepositoryMount" (dict "readOnly" false "context" .) | nindent 8 }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $job.tmpSizeLimit }}
    {{- include "triton.repositoryApiKeyVolume" . | nindent 4 }}
    {{- include "triton.modelRepositoryVolume" (dict "readOnly" false "context" .) | nindent 4 }}
{{- end }}

{{/*
Render-time guards of the promotion Job. Every message starts with the value path.
Usage: {{ include "triton.validatePromotionJob" . }}
*/}}
{{- define "triton.validatePromotionJob" -}}
{{- $job := .Values.promotion.job }}
{{- if $job.enabled }}
{{- if not $job.image.repository }}
{{- fail "promotion.job.image.repository: set the image that holds the tritonops package (build it from the repository's Dockerfile; see \"Running a promotion in the cluster\" in the chart README)" }}
{{- end }}
{{- if not (or $job.image.tag $job.image.digest) }}
{{- fail "promotion.job.image.tag: set the tritonops image's tag, or promotion.job.image.digest" }}
{{- end }}
{{- if not $job.model }}
{{- fail "promotion.job.model: name the model to promote, or set promotion.job.enabled=false" }}
{{- end }}
{{- if kindIs "invalid" $job.version }}
{{- fail "promotion.job.version: set the version to promote (a whole number, 1 or more), or set promotion.job.enabled=false" }}
{{- end }}
{{- $repo := .Values.modelRepository }}
{{- range $source := list "objectStore" "image" "download" }}
{{- if (get $repo $source).enabled }}
{{- fail (printf "promotion.job.enabled: the promotion writes the committed state into a shared model repository, and modelRepository.%s has no shared folder it can write to; use modelRepository.pvc (a ReadWriteMany claim), or set promotion.job.enabled=false" $source) }}
{{- end }}
{{- end }}
{{- /* The pod may wait for a ready replica, then load (which may fail) and roll back (one more load). */}}
{{- if le (float64 $job.activeDeadlineSeconds) (addf $job.waitForReadySeconds (mulf $job.loadTimeoutSeconds 2)) }}
{{- fail (printf "promotion.job.activeDeadlineSeconds: %d must exceed promotion.job.waitForReadySeconds (%v s: waiting for a ready pod) plus twice promotion.job.loadTimeoutSeconds (%v s: a failed load is followed by the rollback's load), or the deadline stops promotions that would succeed; raise it, or lower those" (int64 $job.activeDeadlineSeconds) $job.waitForReadySeconds $job.loadTimeoutSeconds) }}
{{- end }}
{{- range $job.extraArgs }}
{{- /* Full names only: the CLI accepts no abbreviations (allow_abbrev=False), so none slips past. */}}
{{- $flag := regexFind "^--(service|endpoints|namespace|kubeconfig|context|wait-for-ready|repository|api-key-file|api-header|version|from|load-timeout|work-dir)(=|$)" . }}
{{- if $flag }}
{{- fail (printf "promotion.job.extraArgs: %q is set by the chart (the Service's replicas, the release namespace, promotion.job.waitForReadySeconds, the mounted repository and key, promotion.job.version, .from and .loadTimeoutSeconds); remove it" .) }}
{{- end }}
{{- /* Each item is one argument, passed as is (no shell splits it): `--canary 1` would be one word. */}}
{{- if regexMatch "^-[-A-Za-z0-9]*[A-Za-z0-9]\\s" . }}
{{- fail (printf "promotion.job.extraArgs: %q is one argument holding a space after its flag; give the flag and its value as two items, or as one with `=` (e.g. --canary=1)" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
