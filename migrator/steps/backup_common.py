"""What backup.create and backup.restore share: the destination, the manifest, the target's databases.

A backup is a folder at the destination (`<dir>/<name>/` or `s3://bucket/<prefix>/<name>/`) holding one
artefact per thing backed up and, written last, `backup.json`: the manifest listing every artefact with
its size and sha256 (and, for a volume, every file's sha256). A folder without `backup.json` is not a
backup (an interrupted one). The target's databases are the targets of the runbook's postgres.copy and .replicate
steps (their endpoint, database and credentials: the same path postgres.copy and postgres.verify use).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from migrator.errors import PermanentError
from migrator.runbook.loader import params_model
from migrator.steps.base import Facts, StepContext, StrictModel
from migrator.steps.postgres.pg_common import TargetParams

if TYPE_CHECKING:
    from migrator.adapters.objectstore import Store

MANIFEST = "backup.json"
FORMAT = 1


class S3Params(StrictModel):
    bucket: str = Field(min_length=1)
    prefix: str = ""
    endpoint_url: str | None = None  # default: AWS; an S3-compatible service's URL otherwise
    region: str = "us-east-1"
    # The keys: ${secrets.x} each (in a phase file), or the NAMES of runbook secrets (`*_secret`: what a
    # runbook's vars can hold, since vars never hold secret references).
    access_key_id: str | None = None
    secret_access_key: str | None = None
    access_key_id_secret: str | None = None
    secret_access_key_secret: str | None = None
    ca_file: str | None = None  # a CA bundle for the endpoint's certificate (TLS is always verified)
    # An artefact larger than one part goes up as a multipart upload of parts this large (5 MiB, S3's
    # smallest, to 5 GiB); larger when the file would need more than S3's 10000 parts.
    part_size_mb: int = Field(default=64, ge=5, le=5120)

    @model_validator(mode="after")
    def _https(self) -> S3Params:
        for name in ("access_key_id", "secret_access_key"):
            if (getattr(self, name) is None) == (getattr(self, f"{name}_secret") is None):
                raise ValueError(f"give exactly one of {name} (${{secrets.x}}), {name}_secret (a secret's name)")
        url = self.endpoint_url
        if url is not None and not url.startswith(("https://", "http://127.", "http://localhost", "http://[::1]")):
            raise ValueError("endpoint_url must be https:// (plain http only to a loopback address)")
        return self


class BackupFacts(Facts):
    """What backup.create records that backup.restore (`backup_step`) reads back: where the backup is."""

    folder: str | None = None  # under the destination; None until the first artefact is made
    backup_id: str | None = None
    location: str | None = None


class Destination(StrictModel):
    dir: str | None = None  # a directory; a relative one is under the run's state directory
    s3: S3Params | None = None

    @model_validator(mode="after")
    def _one(self) -> Destination:
        if (self.dir is None) == (self.s3 is None):
            raise ValueError("give exactly one of dir, s3")
        return self


def open_store(ctx: StepContext, dest: Destination) -> Store:
    """The destination's store, one per run (the engine closes the S3 client at the end)."""
    from migrator.adapters import objectstore  # requests: loaded by a backup, not by `status`

    if dest.dir is not None:
        root = Path(dest.dir).expanduser()
        return objectstore.DirStore(root if root.is_absolute() else ctx.state_dir / root)
    s3 = dest.s3
    assert s3 is not None
    verify: bool | str = str(ctx.path(s3.ca_file)) if s3.ca_file else True
    key_id = s3.access_key_id if s3.access_key_id is not None else ctx.secret(str(s3.access_key_id_secret))
    secret = (s3.secret_access_key if s3.secret_access_key is not None
              else ctx.secret(str(s3.secret_access_key_secret)))
    key = f"s3:{s3.endpoint_url}:{s3.bucket}:{s3.prefix}"
    return ctx.resource(key, lambda: objectstore.S3Store(  # type: ignore[no-any-return]
        bucket=s3.bucket, prefix=s3.prefix, endpoint_url=s3.endpoint_url, region=s3.region,
        access_key_id=key_id, secret_access_key=secret, verify=verify, part_size=s3.part_size_mb * 1024**2))


def destination_problems(field: str, dest: Destination, runbook: Any) -> list[tuple[str, str]]:
    """At load time: secrets named by the destination exist in the runbook."""
    if dest.s3 is None:
        return []
    return [(f"{field}.s3.{name}", f"no secret {value!r} in the runbook's secrets")
            for name in ("access_key_id_secret", "secret_access_key_secret")
            for value in [getattr(dest.s3, name)] if value is not None and value not in runbook.secrets]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(store: Store, folder: str) -> dict[str, Any]:
    """The backup's manifest, its own recorded checksum verified; refuses an incomplete backup."""
    key = f"{folder}/{MANIFEST}"
    data = store.read_bytes(key)
    if data is None:
        raise PermanentError(f"backup {store.label}/{folder}: no {MANIFEST} (not a complete backup)")
    st = store.stat(key)
    if st is None or st.sha256 != sha256_bytes(data):
        raise PermanentError(f"backup {store.label}/{folder}: {MANIFEST} does not match its recorded sha256: "
                             "refusing it")
    try:
        doc: dict[str, Any] = json.loads(data)
    except ValueError:
        raise PermanentError(f"backup {store.label}/{folder}: {MANIFEST} is not JSON") from None
    if doc.get("format") != FORMAT or not isinstance(doc.get("artefacts"), list):
        raise PermanentError(f"backup {store.label}/{folder}: {MANIFEST} is not a format-{FORMAT} manifest")
    return doc


def problems_at(store: Store, folder: str, artefacts: list[dict[str, Any]], deep: bool) -> list[str]:
    """What is wrong with the stored artefacts: missing, another size, another recorded sha256, and (deep,
    where the store can read cheaply: a directory) contents that no longer hash to it."""
    out = []
    for a in artefacts:
        key = f"{folder}/{a['key']}"
        st = store.stat(key)
        if st is None:
            out.append(f"{a['key']}: missing")
        elif st.size != a["size"] or st.sha256 != a["sha256"]:
            out.append(f"{a['key']}: size {st.size} / sha256 {st.sha256} instead of {a['size']} / {a['sha256']}")
        elif deep and store.sha256_of(key) != a["sha256"]:
            out.append(f"{a['key']}: contents no longer match its sha256")
    return out


def target_databases(ctx: StepContext, explicit: list[TargetParams] | None) -> list[TargetParams]:
    """The target databases: `explicit`, or the target of every postgres.copy/replicate step (secrets
    resolved now, in memory), one per endpoint and database."""
    if explicit is not None:
        return list(explicit)

    found: dict[tuple[str, str], TargetParams] = {}
    for step in ctx.runbook.steps:
        if step.spec.uses not in ("postgres.copy", "postgres.replicate"):
            continue
        target = params_model(step, ctx.secret).target  # type: ignore[attr-defined]
        found.setdefault((target.endpoint, target.database), target)
    return list(found.values())


def staging(ctx: StepContext, what: str, folder: str) -> Path:
    """A 0700 directory under the state dir for the artefacts on their way (dumps hold customer data)."""
    path = ctx.state_dir / what / folder
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path
