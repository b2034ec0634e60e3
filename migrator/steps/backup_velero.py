"""backup.create with `backend: velero`: a Velero `Backup` of the target's namespaces, waited for.

The step creates `velero.io/v1 Backup` `<runbook>-<step>-<time>` in Velero's namespace (recorded before it
is created) and its gate waits until Velero reports `status.phase: Completed`; `Failed`,
`PartiallyFailed` and `FailedValidation` fail the step with Velero's reasons. Where Velero is not
installed (no CustomResourceDefinition backups.velero.io, or no namespace) the step fails with that
reason and never passes. Rollback asks Velero to delete the backup and its data (a
`DeleteBackupRequest`): deleting the Backup object alone would leave the data in the bucket and Velero
would sync the object back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from migrator.adapters import resources
from migrator.adapters.kube import Ref
from migrator.errors import GateNotReady, PermanentError
from migrator.steps.base import Check, Plan, StepContext, StrictModel

if TYPE_CHECKING:
    from migrator.adapters.kube import KubeCluster

CRD = "backups.velero.io"
FAILED = ("Failed", "PartiallyFailed", "FailedValidation")


class VeleroParams(StrictModel):
    namespace: str = "velero"  # where Velero runs
    included_namespaces: list[str] = Field(min_length=1)
    storage_location: str | None = None  # a BackupStorageLocation; default: Velero's default one
    ttl: str = "720h0m0s"
    snapshot_volumes: bool = True  # volume snapshots (CSI or the provider's)
    default_volumes_to_fs_backup: bool = False  # file-system backup (kopia) of every pod volume instead


class Velero:
    def __init__(self, ctx: StepContext, params: VeleroParams) -> None:
        self.ctx, self.p = ctx, params

    def kube(self) -> KubeCluster:
        return resources.kube(self.ctx.resource, self.ctx.runbook)

    def _problem(self) -> str | None:
        kube = self.kube()
        if kube.get(Ref("CustomResourceDefinition", CRD)) is None:
            return (f"Velero is not installed on {kube.describe()}: the CustomResourceDefinition {CRD} does not exist "
                    "(install Velero, or use backup.create's default backend)")
        if kube.get(Ref("Namespace", self.p.namespace)) is None:
            return f"Velero's namespace {self.p.namespace!r} does not exist on {kube.describe()} (with.velero.namespace)"
        return None

    def _name(self) -> str:
        name = self.ctx.facts.get("velero_backup")
        if not name:
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
            name = f"{self.ctx.runbook.name}-{self.ctx.step_id}-{stamp}"[:63].rstrip("-")
        return str(name)

    def manifest(self, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"includedNamespaces": list(self.p.included_namespaces), "ttl": self.p.ttl,
                                "snapshotVolumes": self.p.snapshot_volumes,
                                "defaultVolumesToFsBackup": self.p.default_volumes_to_fs_backup}
        if self.p.storage_location:
            spec["storageLocation"] = self.p.storage_location
        return {"apiVersion": "velero.io/v1", "kind": "Backup",
                "metadata": {"name": name, "namespace": self.p.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "migrator", "migrator.step": self.ctx.step_id}},
                "spec": spec}

    def _live(self) -> dict[str, Any] | None:
        name = self.ctx.facts.get("velero_backup")
        return self.kube().get(Ref("Backup", str(name), self.p.namespace)) if name else None

    def check(self) -> Check:
        live = self._live()
        phase = ((live or {}).get("status") or {}).get("phase")
        if phase == "Completed":
            return Check(True, f"Velero backup {self.ctx.facts['velero_backup']} Completed")
        return Check(False, f"Velero backup: {phase or 'none'}")

    def plan(self) -> Plan:
        problem = self._problem()
        if problem:
            return Plan(unknowns=[f"the run will stop here: {problem}"])
        return Plan(changes=[f"create Velero Backup {self._name()} in {self.p.namespace} of "
                             f"{', '.join(self.p.included_namespaces)}"],
                    waits=["Velero's backup until Completed (its work: not predictable)"])

    def apply(self) -> None:
        problem = self._problem()
        if problem:
            raise PermanentError(problem)
        if self._live() is not None:
            return  # created by an earlier attempt: the gate waits for it
        name = self._name()
        self.ctx.record(velero_backup=name, velero_namespace=self.p.namespace, started_at=time.time())
        self.kube().apply(self.manifest(name))

    def verify(self) -> None:
        live = self._live()
        if live is None:
            raise PermanentError(f"Velero backup {self.ctx.facts.get('velero_backup')} is gone")
        status = live.get("status") or {}
        phase = status.get("phase") or "New"
        if phase in FAILED:
            why = "; ".join([*(status.get("validationErrors") or []), str(status.get("failureReason") or "")]).strip("; ")
            raise PermanentError(f"Velero backup {live['metadata']['name']}: {phase}"
                                 + (f": {why}" if why else "") + f" (errors {status.get('errors', 0)}, "
                                 f"warnings {status.get('warnings', 0)}; `velero backup logs` says more)")
        if phase != "Completed":
            progress = status.get("progress") or {}
            raise GateNotReady(f"Velero backup {live['metadata']['name']}: {phase} "
                               f"({progress.get('itemsBackedUp', 0)}/{progress.get('totalItems', '?')} items)")
        progress = status.get("progress") or {}
        self.ctx.record(completed_at=time.time(), items=progress.get("itemsBackedUp"),
                        seconds=round(time.time() - float(self.ctx.facts.get("started_at") or time.time()), 3))

    def rollback_plan(self) -> Plan:
        name = self.ctx.facts.get("velero_backup")
        return Plan(changes=[f"ask Velero to delete backup {name} and its data (DeleteBackupRequest)"] if name else [])

    def rollback(self) -> None:
        name = self.ctx.facts.get("velero_backup")
        if not name or self._live() is None:
            self.ctx.record(velero_backup=None, completed_at=None)
            return
        self.kube().apply({"apiVersion": "velero.io/v1", "kind": "DeleteBackupRequest",
                           "metadata": {"name": f"{name}-delete"[:63], "namespace": self.p.namespace},
                           "spec": {"backupName": name}})
        self.ctx.record(velero_backup=None, completed_at=None, delete_requested=name)

    def report(self) -> dict[str, Any]:
        f = self.ctx.facts
        return {k: f[k] for k in ("velero_backup", "items", "seconds") if f.get(k) is not None}
