"""The Kubernetes half of a provisioned HarperCluster (spec.instances): read pods and objects, write what
provision.scale decided. The Harper half stays in loop.py; this hands it a PodView.

Quiet by design: every object is applied once per process and then only when its rendering changes (or the
StatefulSet's replicas must move), so a steady cluster costs reads, not writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from pydantic import ValidationError

from .. import kube
from ..api import HarperClusterSpec
from ..api.cluster import generated_ca_secret_name, generated_tls_secret_name
from ..provision import pki, render
from ..provision.scale import Pod, Seen, steps
from ..reconcile.drain import still_proven
from ..reconcile.problems import Problem

log = logging.getLogger(__name__)

EventSink = Callable[[Mapping[str, Any], str, str, str], None]


@dataclass(frozen=True)
class PodView:
    """What the Harper reconcile needs from the Kubernetes side of a provisioned cluster."""

    not_ready: frozenset[str] = frozenset()  # hostnames of members whose pod is not Ready (or absent)
    problem: Problem | None = None  # why the cluster is not done on the Kubernetes side (progress or a stop)
    replicas: int | None = None
    selector: str | None = None
    pods: Mapping[str, str] = field(default_factory=dict)  # hostname -> the uid of its pod (running, not deleting)
    leaving: frozenset[str] = frozenset()  # hostnames of members leaving by a scale-down (their data is proven first)
    out_of_service: frozenset[str] = frozenset()  # leaving members no longer in the client Service
    hibernated: bool = False  # replicas 0 and every pod stopped: nothing to read or write in Harper
    hibernating: bool = False  # replicas 0: the pods are going or gone; Harper is left alone
    # hostname -> the serial of the certificate issued to it after its Harper started: Harper must load it from the
    # updated files by itself (it watches them, but missed a second update in a row on the node) or be restarted
    renewed: Mapping[str, int] = field(default_factory=dict)
    # during a rollover of the cluster's authority: the new one's serial, which every running member's Harper must be
    # seen to list among its authorities before the pods move to certificates it signs (else None)
    authority: int | None = None


def _digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata", {}).get("ownerReferences") or []))


def _ordinal(name: str, statefulset: str) -> int | None:
    tail = name[len(statefulset) + 1:] if name.startswith(statefulset + "-") else ""
    return int(tail) if tail.isdigit() else None


def _pods(items: list[dict[str, Any]], statefulset: str) -> tuple[Pod, ...]:
    out = []
    for p in items:
        meta = p.get("metadata") or {}
        ordinal = _ordinal(meta.get("name", ""), statefulset)
        if ordinal is None:
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])
        labels = meta.get("labels") or {}
        serving = {"true": True, "false": False}.get(labels.get(render.SERVING_LABEL, ""))
        out.append(Pod(ordinal, meta["name"], ready, labels.get("controller-revision-hash"),
                       deleting=bool(meta.get("deletionTimestamp")), serving=serving))
    return tuple(out)


class Provisioner:
    """One cluster's provisioning; lives as long as the cluster's daemon."""

    def __init__(self, namespace: str, name: str, *, events: EventSink, domain: str = "cluster.local",
                 enabled: bool = True):
        self.namespace, self.name, self.events, self.domain = namespace, name, events, domain
        self.enabled = enabled
        self._applied: dict[str, str] = {}  # object key -> digest of what this process last applied
        self._secret_done = False
        # When the first of the certificates issued the pods (or their authority) expires, seconds since the epoch;
        # the handler exports it (HarperCertificateExpiring). None: no certificate issued by this process yet.
        self.first_expiry: float | None = None
        self._issued: dict[str, tuple[int, float]] = {}  # pod -> (serial, when it was issued) of its certificate
        self.authority_to_confirm: int | None = None  # PodView.authority

    async def _certificates(self, body, spec: HarperClusterSpec, owner: render.Owner, place: render.Place,
                            ordinals: range, hosts: Mapping[int, str], started: Mapping[str, float],
                            confirmed: "Confirmed") -> Problem | None:
        """The cluster's authority and a good certificate of it for every pod that may run, written before the
        StatefulSet so a new pod finds its own; None when both are in place. The authority is the Secret
        spec.tls.caSecretRef names (the user's own CA: its certificate, first in the key named, and the private key
        beside it), else NAME-ca, which the operator makes once and rolls over when a third of its lifetime is left.
        `started`: when each running pod's Harper started; `confirmed`: what the Harper of each was seen to trust and
        present."""
        now = datetime.now(timezone.utc)
        given = spec.tls.ca_secret_ref
        name, cert_key = (given.name, given.key) if given else (generated_ca_secret_name(self.name), render.CA_KEY)
        found = await kube.read_secret(self.namespace, name)
        if found is None and not given:
            made = pki.new_authority(f"{self.namespace}/{self.name}", now)
            if await kube.create_secret(render.ca_secret(owner, pki.Authority(made, (made.certificate,)))):
                self.events(body, "Normal", "CertificateAuthorityCreated",
                            f"made the cluster's certificate authority, Secret {name}")
            found = await kube.read_secret(self.namespace, name)  # what was written, by this process or another
        readable, data = found or (False, {})
        try:
            authority = pki.read_authority(data.get(cert_key) or "", next(
                (data[k] for k in render.CA_PRIVATE_KEYS if data.get(k)), ""), data.get(render.CA_PREVIOUS_KEY) or "")
            usable = readable and pki.matches(authority.signing) and (not given or not pki.due(
                authority.signing.certificate, now))
        except pki.BadCertificate:
            usable = False
        if not usable:
            fix = ("fix it: the operator signs the pods' certificates with that CA" if given else
                   "restore it, or delete it for a new one (every pod then gets a new certificate)")
            return Problem("CertificateAuthorityInvalid", (
                f"Secret {name} must hold the cluster's certificate authority ({cert_key}, the CA's certificate first, "
                f"and its private key as {' or '.join(render.CA_PRIVATE_KEYS)}; labelled harperoperator.dev/readable="
                f"true; not expiring): the operator issues no certificate until it does; {fix}"), permanent=True)
        if not given and pki.due(authority.signing.certificate, now):
            authority = await self._roll_over(body, name, pki.roll_over(authority, f"{self.namespace}/{self.name}", now),
                                              "CertificateAuthorityRollover",
                                              f"made a new certificate authority in Secret {name} (the old one has a "
                                              "third of its lifetime left): the pods trust both, then move to "
                                              "certificates of the new one")
        tls_name = generated_tls_secret_name(self.name)
        current = await kube.read_secret(self.namespace, tls_name)
        files = current[1] if current and current[0] else {}
        wanted = {place.pod(o): render.certificate_names(owner, place, o) for o in ordinals}
        held = {pod: pki.KeyPair(files[f"{pod}.crt"] or "", files[f"{pod}.key"] or "")
                for pod in wanted if files.get(f"{pod}.crt") and files.get(f"{pod}.key")}
        signing = pki.serial(authority.signing.certificate)
        running = _running(ordinals, hosts, place, started)
        all_trust = not authority.rolling() or _all_trust(running, signing, confirmed)
        self.authority_to_confirm = signing if authority.rolling() and not all_trust else None
        issued = pki.certificates(authority.signer(all_trust), held, wanted, now, authority.accepted(all_trust))
        renewed = sorted(pod for pod in issued if issued[pod] is not held.get(pod))
        stale = files.get(render.CA_KEY) != authority.bundle or set(files) != {
            render.CA_KEY, *(f"{pod}.{ext}" for pod in issued for ext in ("crt", "key"))}
        self.first_expiry = min(pki.expires(pem).timestamp()
                                for pem in [authority.signing.certificate, *(c.certificate for c in issued.values())])
        self._issued = {pod: pki.serial_and_issued_at(pair.certificate) for pod, pair in issued.items()}
        if renewed or stale:
            await self._apply(body, render.tls_secret(owner, authority.bundle, issued), force=True)
            if renewed:
                self.events(body, "Normal", "CertificatesIssued", f"issued certificates for {', '.join(renewed)} "
                                                                  f"from the cluster's authority (Secret {tls_name})")
        elif authority.previous is not None and all_trust and _all_present(self._issued, running, started, confirmed):
            # Every running pod presents a certificate of the new authority: the old one is trusted no more.
            await self._roll_over(body, name, pki.settled(authority), "CertificateAuthorityRolledOver",
                                  f"every pod presents a certificate of the new authority: the previous one is no "
                                  f"longer trusted (Secret {name})")
        return None

    async def _issued_by_cert_manager(self, body, spec: HarperClusterSpec, owner: render.Owner, place: render.Place,
                                      ordinals: range, hosts: Mapping[int, str], started: Mapping[str, float],
                                      confirmed: "Confirmed") -> Problem | None:
        """spec.tls.issuerRef: a cert-manager Certificate for every pod that may run, and what cert-manager issued
        copied into the pods' Secret (one Secret for the StatefulSet's one pod template), with the CAs its Secrets
        carry as the authorities to trust; None when every pod's certificate is there. cert-manager renews them; the
        next round copies the renewal, which reaches the pods as the operator's own renewals do.

        A switch of authority (issuerRef set on a running cluster, or the issuer's CA replaced) goes as a rollover
        does: the pods trust the CAs they trusted and the issuer's, keep their certificates until each running pod's
        Harper lists the issuer's CA, then get the issued ones; the old CAs go once each pod presents its new one."""
        issuer = spec.tls.issuer_ref
        assert issuer is not None
        for o in ordinals:
            try:
                await self._apply(body, render.certificate_request(owner, place, o, issuer))
            except kube.ApiException as e:
                if e.status == 404:
                    return Problem("CertManagerNotInstalled", (
                        "spec.tls.issuerRef needs cert-manager: the API server serves no Certificate "
                        "(cert-manager.io/v1); install cert-manager, or remove issuerRef for the operator's own "
                        "certificate authority"), permanent=True)
                raise
        pairs, trusted, waiting = {}, [], []
        for o in ordinals:
            pod = place.pod(o)
            found = await kube.read_secret(self.namespace, render.issued_secret_name(pod))
            data = found[1] if found and found[0] else {}
            pair = pki.KeyPair(data.get("tls.crt") or "", data.get("tls.key") or "")
            try:
                usable = pki.matches(pair) and set(render.certificate_names(owner, place, o)) <= pki.names(
                    pair.certificate)
            except pki.BadCertificate:
                usable = False
            if not usable:
                waiting.append(render.issued_secret_name(pod))
                continue
            pairs[pod] = pair
            trusted.append(data.get(render.CA_KEY) or "")
        if waiting:
            return Problem("CertificatesPending", (
                f"waiting for cert-manager to issue Certificate(s) {', '.join(waiting)} ({issuer.kind} {issuer.name}): "
                "a pod starts only with its certificate; `kubectl describe certificate` shows why one is not ready"),
                           permanent=False)
        try:
            bundle = pki.bundle(*trusted)
        except pki.BadCertificate:
            bundle = ""
        if not bundle:
            return Problem("CertificateAuthorityUnknown", (
                f"the Secrets cert-manager wrote for {issuer.kind} {issuer.name} carry no CA certificate (ca.crt), so "
                "neither the pods nor the operator could verify a peer: use an issuer that sets it (a CA issuer "
                "does), or spec.tls.caSecretRef with your CA and its key"), permanent=True)
        issuers = pki.split(bundle)
        current = await kube.read_secret(self.namespace, generated_tls_secret_name(self.name))
        files = current[1] if current and current[0] else {}
        try:
            before = [c for c in pki.split(files.get(render.CA_KEY) or "") if c not in issuers]
        except pki.BadCertificate:
            before = []
        running = _running(ordinals, hosts, place, started)
        signing = pki.serial(issuers[0])
        all_trust = not before or _all_trust(running, signing, confirmed)
        if not all_trust:  # a pod presenting the issuer's certificate now would be cut off from those that do not
            pairs = {pod: pki.KeyPair(files[f"{pod}.crt"] or "", files[f"{pod}.key"] or "")
                     if files.get(f"{pod}.crt") and files.get(f"{pod}.key") else pair for pod, pair in pairs.items()}
        self._issued = {pod: pki.serial_and_issued_at(pair.certificate) for pod, pair in pairs.items()}
        moved = all_trust and _all_present(self._issued, running, started, confirmed)
        bundle = pki.bundle(*issuers, *([] if moved else before))
        self.first_expiry = min(pki.expires(pair.certificate).timestamp() for pair in pairs.values())
        self.authority_to_confirm = signing if not all_trust else None
        if await self._apply(body, render.tls_secret(owner, bundle, pairs)):
            self.events(body, "Normal", "CertificatesIssued", f"copied the certificates cert-manager issued for "
                                                              f"{', '.join(sorted(pairs))} into Secret "
                                                              f"{generated_tls_secret_name(self.name)}")
        return None

    async def _roll_over(self, body, name: str, authority: pki.Authority, reason: str, message: str) -> pki.Authority:
        await kube.merge_patch("Secret", self.namespace, name, render.ca_secret_change(authority))
        self.events(body, "Normal", reason, message)
        return authority

    async def _apply(self, body: Mapping[str, Any], obj: dict[str, Any], *, force: bool = False) -> bool:
        key = f"{obj['kind']}/{obj['metadata']['name']}"
        digest = _digest(obj)
        if not force and self._applied.get(key) == digest:
            return False
        created = key not in self._applied
        await kube.apply(obj)
        self._applied[key] = digest
        self.events(body, "Normal", "Applied", f"{'applied' if created else 'updated'} {key}")
        return True

    async def ensure(self, body: Mapping[str, Any], nodes: list[Mapping[str, Any]], *, converged: bool,
                     others: list[Mapping[str, Any]] = (), drained: Mapping[str, frozenset[str]] | None = None,
                     waits: Mapping[str, str] | None = None, confirmed: "Confirmed | None" = None) -> PodView | None:
        """One round of the Kubernetes side; None when the cluster is not provisioned (or its spec is invalid:
        the Harper reconcile reports that). `nodes`: the HarperNodes naming this cluster; `others`: the
        namespace's other HarperNodes (a name this cluster would give its pods may be taken there); `drained`:
        leaving members whose records the last Harper round found on the members that stay, with the members it
        covered; `waits`: what the others' proof still waits for (hostname -> words); `confirmed`: the certificates
        the members' Harper was seen to trust and present."""
        try:
            spec = HarperClusterSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            return None
        if spec.instances is None:
            return None
        if not self.enabled:
            return PodView(problem=Problem("ProvisioningDisabled", "spec.instances needs the operator's provisioning "
                                                                   "rights, and this operator runs with "
                                                                   "--no-provisioning: install the chart with "
                                                                   "rbac.provisioning=true, or remove spec.instances"))
        owner = render.Owner(self.namespace, self.name, body["metadata"].get("uid", ""), self.domain)
        try:
            return await self._ensure(body, spec, owner, nodes, list(others), converged,
                                      Proof(dict(drained or {}), dict(waits or {})), confirmed or Confirmed())
        except kube.ApiException as e:
            reason = "KubernetesRefused" if 400 <= e.status < 500 and e.status not in (409, 429) else "KubernetesError"
            detail = (e.body or e.reason or "")[:500] if isinstance(e.body or e.reason, str) else str(e.status)
            return PodView(problem=Problem(reason, f"writing the cluster's Kubernetes objects failed: {e.status} "
                                                   f"{detail}", permanent=reason == "KubernetesRefused"))

    async def _ensure(self, body, spec: HarperClusterSpec, owner: render.Owner, nodes, others,
                      converged: bool, proof: "Proof", confirmed: "Confirmed") -> PodView:
        instances = spec.instances
        if len(self.name) > render.MAX_NAME:
            return PodView(problem=Problem("NameTooLong", f"a provisioned HarperCluster's name may have at most "
                                                          f"{render.MAX_NAME} characters (its pods are NAME-<ordinal> "
                                                          "and must stay DNS labels): recreate it with a shorter name"))
        mine, deleting, taken = set(), set(), []
        for n in [*nodes, *others]:
            meta = n.get("metadata") or {}
            ordinal = _ordinal(meta.get("name", ""), self.name)
            if ordinal is None:
                continue
            if not _owned_by(n, owner.uid):
                taken.append(meta["name"])
            elif meta.get("deletionTimestamp"):
                deleting.add(ordinal)
            else:
                mine.add(ordinal)
        clash = [t for t in taken if (_ordinal(t, self.name) or 0) < instances.replicas]
        if clash:
            return PodView(problem=Problem("HarperNodeNameTaken", f"HarperNode(s) {', '.join(sorted(clash))} exist and "
                                                                  "are not this cluster's: the operator names its "
                                                                  "nodes NAME-<ordinal>; rename or delete them"))

        if instances.adopt is not None:
            found = [s for s in await kube.list_statefulsets(self.namespace, "")
                     if render.adopts(dict(instances.adopt.match_labels), s)]
            if len(found) != 1:
                what = "no StatefulSet" if not found else f"{len(found)} StatefulSets ({', '.join(sorted(s['metadata']['name'] for s in found))})"
                return PodView(problem=Problem("AdoptionTargetNotFound" if not found else "AdoptionAmbiguous",
                                               f"spec.instances.adopt.matchLabels selects {what} in namespace "
                                               f"{self.namespace}: it must select exactly one"))
            sts = found[0]
            place = render.Place(sts["metadata"]["name"], sts["spec"].get("serviceName") or sts["metadata"]["name"])
            selector = dict((sts["spec"].get("selector") or {}).get("matchLabels") or {})
            refs = sts["metadata"].get("ownerReferences") or []
            if not _owned_by(sts, owner.uid):
                if any(r.get("controller") for r in refs):
                    return PodView(problem=Problem("AdoptionRefused", f"StatefulSet {place.statefulset} already has a "
                                                                      "controller: the operator adopts only a "
                                                                      "StatefulSet nothing else owns"))
                # Adopting changes only metadata: the pods keep running.
                await kube.merge_patch("StatefulSet", self.namespace, place.statefulset,
                                       {"metadata": {"ownerReferences": refs + [owner.reference()]}})
                self.events(body, "Normal", "Adopted", f"adopted StatefulSet {place.statefulset} and its pods")
        else:
            place = render.Place(self.name, self.name)
            selector = render.selector(owner)
            sts = await kube.read_statefulset(self.namespace, self.name)
            if sts is not None and not _owned_by(sts, owner.uid) and \
                    (sts["metadata"].get("labels") or {}).get(render.CLUSTER_LABEL) != self.name:
                return PodView(problem=Problem("StatefulSetNotOwned", f"a StatefulSet named {self.name} exists and is "
                                                                      "not this cluster's: delete it, or adopt it "
                                                                      "with spec.instances.adopt"))
            if spec.credentials is None and not self._secret_done:
                name = spec.secret_name(self.name)
                if await kube.create_secret(render.admin_secret(owner, name, "admin", secrets.token_urlsafe(24))):
                    self.events(body, "Normal", "SecretCreated", f"generated the admin Secret {name}")
                self._secret_done = True

        if instances.adopt is not None and instances.replicas == 0 and \
                ((sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") == "Delete"):
            return PodView(problem=Problem("HibernationWouldDeleteVolumes", (
                f"replicas 0 would delete every volume of StatefulSet {place.statefulset}: its "
                "persistentVolumeClaimRetentionPolicy.whenScaled is Delete; set it to Retain first, or keep "
                "replicas above 0")))
        listed = await kube.list_pods(self.namespace, render.selector_text(selector))
        pods, started = _pods(listed, place.statefulset), _started(listed)
        current = None if sts is None else (sts.get("spec") or {}).get("replicas")
        # Every ordinal that may still run: the spec's, the StatefulSet's, a pod's and a HarperNode's.
        top = max(instances.replicas, current or 0, *(p.ordinal + 1 for p in pods), *(o + 1 for o in mine | deleting))
        hosts = {o: place.host(o, owner) for o in range(top)}
        ordinal_of = {h: o for o, h in hosts.items()}
        claims = {} if instances.adopt is not None else _claims(await kube.list_claims(
            self.namespace, render.selector_text(selector)), place.statefulset)
        plan = steps(Seen(desired=instances.replicas, statefulset_replicas=current,
                          update_revision=((sts or {}).get("status") or {}).get("updateRevision"),
                          node_ordinals=frozenset(mine), deleting_ordinals=frozenset(deleting), pods=pods,
                          converged=converged,
                          drained=frozenset(ordinal_of[h] for h in still_proven(proof.drained, [
                              hosts[o] for o in mine]) if h in ordinal_of),
                          waits={ordinal_of[h]: w for h, w in proof.waits.items() if h in ordinal_of},
                          shards={o.ordinal: o.shard for o in instances.ordinals if o.shard is not None},
                          claims=frozenset(claims), released=frozenset(o for o, c in claims.items() if c),
                          volumes_go=spec.deletion_policy == "Delete"))

        # A leaving pod leaves the client Service before anything else, so no new client write reaches it.
        await self._label_pods(body, place, plan)
        if instances.adopt is not None:
            if current != plan.replicas:
                await kube.merge_patch("StatefulSet", self.namespace, place.statefulset,
                                       {"spec": {"replicas": plan.replicas}})
                self.events(body, "Normal", "Scaled", f"StatefulSet {place.statefulset}: replicas {current} -> "
                                                      f"{plan.replicas}")
        else:
            if spec.issues_certificates:
                sign = self._certificates if spec.tls.issuer_ref is None else self._issued_by_cert_manager
                if problem := await sign(body, spec, owner, place, range(top), hosts, started, confirmed):
                    return PodView(problem=problem)
            for obj in (render.headless_service(owner), render.client_service(owner), render.disruption_budget(owner)):
                await self._apply(body, obj)
            rendered = render.statefulset(owner, spec, plan.replicas)
            if await self._apply(body, rendered, force=sts is None or current != plan.replicas):
                if current is not None and current != plan.replicas:
                    self.events(body, "Normal", "Hibernating" if plan.replicas == 0 else "Scaled",
                                f"StatefulSet {self.name}: replicas {current} -> {plan.replicas}")
        live = {(n.get("metadata") or {}).get("name"): n.get("spec") or {} for n in nodes}
        for ordinal in range(instances.replicas):
            rendered = render.harper_node(owner, instances, place, ordinal)
            # A generated HarperNode someone edited (its URLs decide where credentials go) is put back at once.
            edited = any(live.get(rendered["metadata"]["name"], {}).get(k) != v for k, v in rendered["spec"].items()) \
                and rendered["metadata"]["name"] in live
            await self._apply(body, rendered, force=ordinal in plan.create_nodes or edited)
        await self._mark_claims(body, place, plan)
        for ordinal in plan.delete_nodes:
            if await kube.delete("HarperNode", self.namespace, f"{self.name}-{ordinal}"):
                self.events(body, "Normal", "ScalingDown", f"deleted HarperNode {self.name}-{ordinal}: its records are "
                                                           "on the members that stay; its finalizer removes it from "
                                                           "Harper before its pod goes")
        if plan.delete_pod:
            pod = next(p for p in pods if p.name == plan.delete_pod)
            if await kube.delete("Pod", self.namespace, pod.name):
                self.events(body, "Normal", "RollingUpdate", f"deleted pod {pod.name} (revision {pod.revision}): "
                                                             "it comes back on the new revision")
        for ordinal in plan.delete_claims:
            claim = _claim_name(place, ordinal)
            if await kube.delete("PersistentVolumeClaim", self.namespace, claim):
                self.events(body, "Normal", "VolumeDeleted", f"deleted volume claim {claim}: its data was confirmed "
                                                             "on the members that stay before its member left")

        leaving = frozenset(hosts[o] for o in plan.leaving)
        unserved = {p.ordinal for p in pods if p.serving is False} | set(plan.unserve)
        hibernating = instances.replicas == 0 and current is not None
        return PodView(
            not_ready=frozenset(h for o, h in hosts.items() if o not in plan.ready_pods),
            problem=_problem(plan),
            replicas=sum(1 for p in pods if not p.deleting), selector=render.selector_text(selector),
            pods=_uids(listed, place, hosts),
            leaving=leaving, out_of_service=frozenset(hosts[o] for o in plan.leaving if o in unserved),
            hibernated=plan.hibernated, hibernating=hibernating,
            renewed=_renewed(self._issued if spec.issues_certificates and instances.adopt is None else {},
                             started, place, hosts),
            authority=self.authority_to_confirm if spec.issues_certificates and instances.adopt is None else None)

    async def _label_pods(self, body, place: render.Place, plan) -> None:
        for ordinal, value in [*((o, "true") for o in plan.serve), *((o, "false") for o in plan.unserve)]:
            pod = place.pod(ordinal)
            if await kube.merge_patch("Pod", self.namespace, pod, {"metadata": {"labels": {
                    render.SERVING_LABEL: value}}}) and value == "false":
                self.events(body, "Normal", "OutOfService", f"took pod {pod} out of the client Service: no new "
                                                            "client write reaches it while it leaves")

    async def _mark_claims(self, body, place: render.Place, plan) -> None:
        """Mark the volumes whose data was just proven safe elsewhere (only marked ones are ever deleted), and unmark
        those of ordinals wanted again."""
        for ordinal in plan.release_claims:
            await kube.merge_patch("PersistentVolumeClaim", self.namespace, _claim_name(place, ordinal),
                                   {"metadata": {"annotations": {render.RELEASED_ANNOTATION: "true"}}})
        for ordinal in plan.keep_claims:
            if await kube.merge_patch("PersistentVolumeClaim", self.namespace, _claim_name(place, ordinal),
                                      {"metadata": {"annotations": {render.RELEASED_ANNOTATION: None}}}):
                self.events(body, "Normal", "VolumeKept", f"volume claim {_claim_name(place, ordinal)} is wanted "
                                                          "again: it is no longer marked for deletion")


@dataclass(frozen=True)
class Confirmed:
    """What the Harper rounds saw of the certificates in use, by member: the serial of the authority it lists as its
    newest trusted one (PodView.authority), and of the certificate it presents (PodView.renewed)."""

    trusts: Mapping[str, int] = field(default_factory=dict)
    presents: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Proof:
    """What the last Harper round proved about the leaving members (see reconcile/drain.py)."""

    drained: Mapping[str, frozenset[str]] = field(default_factory=dict)  # proven -> the members it covered
    waits: Mapping[str, str] = field(default_factory=dict)


def _started(listed: list[dict[str, Any]]) -> dict[str, float]:
    """pod name -> when its Harper container last started (seconds since the epoch); running containers only."""
    out = {}
    for p in listed:
        for c in (p.get("status") or {}).get("containerStatuses") or []:
            at = ((c.get("state") or {}).get("running") or {}).get("startedAt")
            if c.get("name") == render.HARPER_CONTAINER and at:
                out[p["metadata"]["name"]] = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    return out


def _running(ordinals: range, hosts: Mapping[int, str], place: render.Place,
             started: Mapping[str, float]) -> dict[str, str]:
    """hostname -> pod name, for the pods of `ordinals` whose Harper container runs."""
    return {hosts[o]: place.pod(o) for o in ordinals if place.pod(o) in started}


def _all_trust(running: Mapping[str, str], authority: int, confirmed: "Confirmed") -> bool:
    """Every running pod's Harper was seen listing the authority (serial). A pod not running yet reads the trusted
    file when it starts."""
    return all(confirmed.trusts.get(host) == authority for host in running)


def _all_present(issued: Mapping[str, tuple[int, float]], running: Mapping[str, str], started: Mapping[str, float],
                 confirmed: "Confirmed") -> bool:
    """Every running pod presents the certificate issued to it: it started after the issue, or was seen presenting
    it since."""
    return all(issued[pod][1] <= started[pod] or confirmed.presents.get(host) == issued[pod][0]
               for host, pod in running.items())


def _renewed(issued: Mapping[str, tuple[int, float]], started: Mapping[str, float], place: render.Place,
             hosts: Mapping[int, str]) -> dict[str, int]:
    """hostname -> serial, for each running pod whose certificate was issued after its container started: the
    files it read at start-up are not those."""
    return {host: issued[pod][0] for o, host in hosts.items()
            if (pod := place.pod(o)) in issued and pod in started and issued[pod][1] > started[pod]}


def _claim_name(place: render.Place, ordinal: int) -> str:
    return f"{render.CLAIM_TEMPLATE}-{place.pod(ordinal)}"


def _claims(items: list[dict[str, Any]], statefulset: str) -> dict[int, bool]:
    """ordinal -> whether its claim is marked released, for the claims of the StatefulSet's own template."""
    out = {}
    for claim in items:
        meta = claim.get("metadata") or {}
        name = meta.get("name", "")
        if not name.startswith(render.CLAIM_TEMPLATE + "-"):
            continue
        ordinal = _ordinal(name[len(render.CLAIM_TEMPLATE) + 1:], statefulset)
        if ordinal is not None and not meta.get("deletionTimestamp"):
            out[ordinal] = (meta.get("annotations") or {}).get(render.RELEASED_ANNOTATION) == "true"
    return out


def _uids(listed: list[dict[str, Any]], place: render.Place, hosts: Mapping[int, str]) -> dict[str, str]:
    out = {}
    for p in listed:
        meta = p.get("metadata") or {}
        ordinal = _ordinal(meta.get("name", ""), place.statefulset)
        if ordinal in hosts and meta.get("uid") and not meta.get("deletionTimestamp"):
            out[hosts[ordinal]] = meta["uid"]
    return out


def _problem(plan) -> Problem | None:
    if plan.refused:
        return Problem("ShardWouldBeLost", plan.refused)
    if plan.progress:
        return Problem(_progress_reason(plan.progress), plan.progress, permanent=False)
    return None


def _progress_reason(progress: str) -> str:
    if progress.startswith("hibernating"):
        return "Hibernating"
    if progress.startswith("scaling down") and "waiting for the leaving" in progress:
        return "WaitingForReplication"
    if progress.startswith("scaling down"):
        return "ScalingDown"
    if progress.startswith("rolling out"):
        return "RollingUpdate"
    if progress.startswith("scaling"):
        return "Scaling"
    return "PodsNotReady"


async def orphan(body: Mapping[str, Any]) -> list[str]:
    """deletionPolicy Retain: take the cluster's ownership off its StatefulSet, Services, budget and Secrets, so
    Kubernetes' garbage collector leaves Harper running with its volumes. Returns what was released."""
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta.get("uid", "")
    try:
        spec = HarperClusterSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return []
    if spec.instances is None:
        return []
    released = []
    if spec.instances.adopt is not None:
        found = await kube.list_statefulsets(namespace, "")
        for sts in (s for s in found if render.adopts(dict(spec.instances.adopt.match_labels), s)):
            if _owned_by(sts, uid):
                # A merge patch replaces the whole list: keep the owners the StatefulSet had before us.
                refs = [r for r in sts["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                if await kube.merge_patch("StatefulSet", namespace, sts["metadata"]["name"],
                                          {"metadata": {"ownerReferences": refs or None}}):
                    released.append(f"StatefulSet {sts['metadata']['name']}")
        return released
    # Objects the operator created: its reference is their only owner.
    owned = [("StatefulSet", name), ("Service", name), ("Service", f"{name}-client"), ("PodDisruptionBudget", name)]
    if spec.credentials is None:
        owned.append(("Secret", spec.secret_name(name)))
    if spec.issues_certificates:  # the retained pods mount their certificates, and trust the authority's
        owned.append(("Secret", generated_tls_secret_name(name)))
        if spec.tls.issuer_ref is not None:  # cert-manager keeps renewing what the retained pods mount
            owned.extend(("Certificate", render.issued_secret_name(f"{name}-{o}"))
                         for o in range(spec.instances.replicas))
        elif spec.tls.ca_secret_ref is None:  # a CA the user gave is theirs, never the cluster's
            owned.append(("Secret", generated_ca_secret_name(name)))
    for kind, obj_name in owned:
        if await kube.merge_patch(kind, namespace, obj_name, {"metadata": {"ownerReferences": None}}):
            released.append(f"{kind} {obj_name}")
    return released
