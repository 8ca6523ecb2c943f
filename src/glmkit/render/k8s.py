"""Kubernetes manifests for the same plan: a Deployment for one node, a LeaderWorkerSet
(the usual way vLLM spans nodes on Kubernetes) for several.

The HF token and the API key are Secret references (the key required: a Service is
reachable from every pod of the cluster), the weights live on a PVC, probes hit `/health`
with a start-up budget sized to the model, and the pod keeps compose's least privilege
(no capabilities, the runtime's seccomp profile, no service account token).
Manifests are validated offline against the Kubernetes schemas (kubernetes-validate);
a LeaderWorkerSet's pod templates are validated as PodTemplates, its own fields here.

Kubernetes expands `$(NAME)` in a container's command, args and env values, as Compose
does `${NAME}`: `dump` writes every `$` there as `$$`, except in the kit's own
references (`KubeRef`), so a flag or model id reaches vLLM as it was written.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from glmkit.endpoints import CONTAINER_PORT
from glmkit.errors import UsageError
from glmkit.host.vendors import VENDORS
from glmkit.plan.cluster import ClusterPlan, with_flag
from glmkit.plan.pd import ROUTER, PdPlan, Pool
from glmkit.plan.serve import CONTAINER_HF_HOME, ServePlan
from glmkit.render.compose import Yaml12SafeDumper

K8S_VERSION = "1.33.0"
# Each vendor's extended resource for GPUs, from its profile.
GPU_RESOURCE = {name: p.k8s_gpu_resource for name, p in VENDORS.items() if p.k8s_gpu_resource}
HF_SECRET = "hf-token"
API_KEY_SECRET = "vllm-api-key"
# RFC 1035 label: what a Service's name must be; the Deployment, LeaderWorkerSet and
# labels take the project name too, and derived names (`<project>-hf-cache`) then stay
# far inside a DNS subdomain's 253 characters.
_K8S_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# A LeaderWorkerSet's StatefulSets are `<name>` and `<name>-<group>`; a StatefulSet name
# longer than 52 characters breaks its pods' controller-revision-hash label.
_LWS_NAME_MAX = 50


class KubeRef(str):
    """`$(NAME)`: a reference the kit means Kubernetes to expand (LWS's leader address,
    a worker's index); the one value in command, args or env that `dump` leaves as is."""

    __slots__ = ()

    def __new__(cls, name: str) -> KubeRef:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{name!r} is not an environment variable name")
        return super().__new__(cls, f"$({name})")


def _labels(plan: ServePlan, role: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": plan.project, "app.kubernetes.io/managed-by": "glmkit"}
    if role:
        labels["glmkit/role"] = role
    return labels


def _container(plan: ServePlan, args: list[str], gpus: int, probes: bool) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plan.environment.items()]
    env += [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": HF_SECRET, "key": "token", "optional": True}}},
        # Required: without it the pod does not start, rather than serve every pod of
        # the cluster without a key.
        {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": API_KEY_SECRET, "key": "key", "optional": False}}},
    ]
    container: dict[str, Any] = {
        "name": "vllm", "image": plan.image.ref, "command": ["vllm", "serve"], "args": args,
        "env": env,
        "volumeMounts": [{"name": "hf-cache", "mountPath": CONTAINER_HF_HOME},
                         {"name": "shm", "mountPath": "/dev/shm"}],
        "securityContext": {"allowPrivilegeEscalation": plan.privileged,
                            "privileged": plan.privileged,
                            "capabilities": {"drop": ["ALL"], "add": list(plan.cap_add)}},
    }
    if gpus and plan.vendor.k8s_gpu_resource:
        container["resources"] = {"limits": {plan.vendor.k8s_gpu_resource: gpus}}
    container["securityContext"]["seccompProfile"] = {
        "type": "Unconfined" if "seccomp=unconfined" in plan.security_opt
        else "RuntimeDefault"}  # Docker applies its default profile; Kubernetes does not
    if probes:
        container["ports"] = [{"name": "http", "containerPort": CONTAINER_PORT}]
        health = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10,
                  "timeoutSeconds": 5}
        container["startupProbe"] = {**health,
                                     "failureThreshold": math.ceil(plan.start_period_s / 10)}
        container["readinessProbe"] = {**health, "failureThreshold": 3}
        container["livenessProbe"] = {**health, "failureThreshold": 6}
    return container


def _pod(plan: ServePlan, container: dict[str, Any], labels: dict[str, str]
         ) -> dict[str, Any]:
    return {"metadata": {"labels": labels}, "spec": {
        "automountServiceAccountToken": False,  # vLLM never calls the Kubernetes API
        "containers": [container],
        "volumes": [{"name": "hf-cache", "persistentVolumeClaim": {
                        "claimName": f"{plan.project}-hf-cache"}},
                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]}}


def _pvc(plan: ServePlan, shared: bool) -> dict[str, Any]:
    size = max(10, math.ceil(plan.model.total_params_b * (2 if plan.model.precision == "bf16"
                                                            else 1) * 1.1))
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"{plan.project}-hf-cache", "labels": _labels(plan)},
            "spec": {"accessModes": ["ReadWriteMany" if shared else "ReadWriteOnce"],
                     "resources": {"requests": {"storage": f"{size}Gi"}}}}


def _service(plan: ServePlan, role: str | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": plan.project, "labels": _labels(plan)},
            "spec": {"selector": _labels(plan, role),
                     "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http"}]}}


def _check_exportable(plan: ServePlan, max_name: int = 63) -> None:
    """Before any manifest is built or written: what Kubernetes would refuse later."""
    name = plan.project
    if len(name) > max_name or not _K8S_NAME.fullmatch(name):
        raise UsageError(
            f"Project name {name!r} is not a Kubernetes name: use lowercase letters, digits "
            f"and '-', a letter first and no '-' last, at most {max_name} characters "
            "(pass --project).")
    if plan.model.local_dir:
        raise UsageError(f"{plan.model.id} is a local model folder; a Kubernetes cluster pulls "
                         "weights from the Hub: export a Hub model.")


def single_node(plan: ServePlan) -> list[dict[str, Any]]:
    _check_exportable(plan)
    gpus = plan.tensor_parallel * plan.data_parallel if plan.vendor.has_gpus else 0
    container = _container(plan, list(plan.serve_args), gpus, probes=True)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": plan.project, "labels": _labels(plan)},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": _labels(plan)},
                 "template": _pod(plan, container, _labels(plan))}}
    return [_pvc(plan, shared=False), deployment, _service(plan, None)]


def multi_node(cluster: ClusterPlan) -> list[dict[str, Any]]:
    plan = cluster.base
    _check_exportable(plan, _LWS_NAME_MAX)
    if cluster.engine != "mp":
        raise UsageError("The Kubernetes export spans nodes with vLLM's native engine "
                         "(--engine mp); LeaderWorkerSet starts Ray or DP groups differently.")
    # The leader found through LWS's environment, the API on the pod's own port (the
    # nodes' --host/--port belong to a host network).
    leader_at = KubeRef("LWS_LEADER_ADDRESS")
    head = cluster.pod_args(rank="0", master=leader_at, headless=False)
    worker = cluster.pod_args(rank=KubeRef("LWS_WORKER_INDEX"), master=leader_at,
                              headless=True)
    gpus = cluster.gpus_per_node if plan.vendor.has_gpus else 0
    leader = _pod(plan, _container(plan, list(head), gpus, probes=True),
                  _labels(plan, "leader"))
    workers = _pod(plan, _container(plan, list(worker), gpus, probes=False),
                   _labels(plan, "worker"))
    lws = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
           "metadata": {"name": plan.project, "labels": _labels(plan)},
           "spec": {"replicas": 1, "startupPolicy": "LeaderCreated",
                    "leaderWorkerTemplate": {
                        "size": len(cluster.nodes),
                        "restartPolicy": "RecreateGroupOnPodRestart",
                        "leaderTemplate": leader, "workerTemplate": workers}}}
    return [_pvc(plan, shared=True), lws, _service(plan, "leader")]


def _pd_pool(plan: PdPlan, pool: Pool, urls: dict[str, str]) -> dict[str, Any]:
    """One pool server as a Deployment: its NIXL side channel on the pod's own IP (the
    decode pods reach prefill pods directly, not through a Service)."""
    base = plan.base
    name = f"{base.project}-{pool.service}"
    args = with_flag(with_flag(list(pool.args[1:]), "--host", "0.0.0.0"), "--port",
                     str(CONTAINER_PORT))
    env_plan = ServePlan(**{**base.__dict__, "environment": {
        k: v for k, v in pool.env.items()
        if k not in ("VLLM_NIXL_SIDE_CHANNEL_HOST", "VLLM_CPU_OMP_THREADS_BIND")}})
    container = _container(env_plan, [pool.args[0], *args],
                           pool.tensor_parallel if base.vendor.has_gpus else 0, probes=True)
    container["env"].insert(0, {"name": "VLLM_NIXL_SIDE_CHANNEL_HOST", "valueFrom": {
        "fieldRef": {"fieldPath": "status.podIP"}}})
    labels = _labels(base, pool.service)
    urls[pool.service] = f"http://{name}:{CONTAINER_PORT}"
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                     "selector": {"matchLabels": labels},
                     "template": _pod(base, container, labels)}}


def _named_service(plan: ServePlan, name: str, role: str) -> dict[str, Any]:
    service = _service(plan, role)
    service["metadata"]["name"] = name
    return service


def pd(plan: PdPlan) -> list[dict[str, Any]]:
    """Prefill and decode Deployments (one per server) with a Service each, and the router
    as a Deployment behind the project's Service; the router's key from the API-key
    Secret, as the pools'."""
    base = plan.base
    _check_exportable(base, 50)
    if not plan.local:
        raise UsageError("The Kubernetes export of pd_cluster places one server per pool "
                         "Deployment; export it without --nodes (each pool's GPUs per pod "
                         "come from --prefill-gpus/--decode-gpus).")
    urls: dict[str, str] = {}
    manifests: list[dict[str, Any]] = [_pvc(base, shared=True)]
    for pool in plan.pools:
        manifests.append(_pd_pool(plan, pool, urls))
        manifests.append(_named_service(base, f"{base.project}-{pool.service}", pool.service))
    args = list(plan.router_args)
    for service, url in urls.items():
        args[args.index(next(p for p in plan.pools if p.service == service).url)] = url
    labels = _labels(base, ROUTER)
    router = {
        "name": ROUTER, "image": plan.router_image.ref,
        "command": ["python3", "/opt/glmkit/gate.py"],  # checks the client's key
        "args": args,
        "env": [{"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": API_KEY_SECRET, "key": "key", "optional": False}}}],
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                           "periodSeconds": 10, "timeoutSeconds": 5},
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                            "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    manifests.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{base.project}-{ROUTER}", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"automountServiceAccountToken": False, "containers": [router]}}}})
    manifests.append(_service(base, ROUTER))
    return manifests


def validate(manifests: list[dict[str, Any]], version: str = K8S_VERSION) -> str:
    """Offline: core kinds against the bundled schemas, LWS templates as PodTemplates.

    kubernetes-validate carries every Kubernetes schema (tens of MB): an optional extra.
    Returns what was checked, in words."""
    try:
        import kubernetes_validate
    except ImportError:
        return ("not validated: `pip install 'glmkit[k8s]'` (kubernetes-validate) checks the "
                f"manifests against Kubernetes {version}'s schemas")

    def check(obj: dict[str, Any], what: str) -> None:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            raise UsageError(f"{what} is not valid Kubernetes {version}: "
                             f"{err.message}") from None

    for manifest in manifests:
        if manifest["kind"] != "LeaderWorkerSet":
            check(manifest, f"{manifest['kind']} {manifest['metadata']['name']}")
            continue
        spec = manifest["spec"]["leaderWorkerTemplate"]
        if not isinstance(spec.get("size"), int) or spec["size"] < 2:
            raise UsageError("LeaderWorkerSet size must be at least 2.")
        for role in ("leaderTemplate", "workerTemplate"):
            check({"apiVersion": "v1", "kind": "PodTemplate",
                   "metadata": {"name": f"{manifest['metadata']['name']}-{role.lower()}"},
                   "template": spec[role]}, f"LeaderWorkerSet {role}")
    return f"valid for Kubernetes {version}"


def _literal(value: str) -> str:
    """What Kubernetes expands back to `value`: `$` doubled, a KubeRef kept (plain str)."""
    return str(value) if isinstance(value, KubeRef) else value.replace("$", "$$")


def escape(obj: Any) -> Any:
    """A copy of a manifest whose containers' command, args and env values reach the pod
    literally: the one place `$` is escaped for Kubernetes."""
    if isinstance(obj, list):
        return [escape(item) for item in obj]
    if not isinstance(obj, dict):
        return obj
    out = {key: escape(value) for key, value in obj.items()}
    for key in ("containers", "initContainers"):  # a PodSpec
        for container in out.get(key) or []:
            for field in ("command", "args"):
                if field in container:
                    container[field] = [_literal(word) for word in container[field]]
            for var in container.get("env") or []:
                if isinstance(var.get("value"), str):
                    var["value"] = _literal(var["value"])
    return out


def dump(manifests: list[dict[str, Any]]) -> str:
    header = ("# Generated by glmkit (`invoke export k8s`). Create the secrets first; the API\n"
              "# key is required (pods do not start without it): a Service is reachable from\n"
              "# every pod in the cluster. The Hugging Face token is optional (public models).\n"
              f"#   kubectl create secret generic {API_KEY_SECRET} "
              "--from-literal=key=\"$VLLM_API_KEY\"\n"
              f"#   kubectl create secret generic {HF_SECRET} "
              "--from-literal=token=\"$HF_TOKEN\"\n")
    return header + yaml.dump_all([escape(m) for m in manifests], Dumper=Yaml12SafeDumper,
                                  sort_keys=False, width=1000)
