"""Step types for the Docker Compose stack on the VPS: compose.inspect, compose.freeze, compose.decommission.

Everything goes through the run's shared SSH session and the Docker API over it (migrator.adapters).
"""

from __future__ import annotations

import posixpath
import re
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from migrator.adapters import docker as docker_api
from migrator.adapters.docker import remote_for
from migrator.adapters.inventory import collect
from migrator.adapters.ssh import session_for
from migrator.errors import GateNotReady, PermanentError, RefusedError
from migrator.runbook.coverage import evaluate
from migrator.steps.base import Check, Facts, Plan, Step, StrictModel, step_type

if TYPE_CHECKING:
    from migrator.adapters.docker import DockerRemote
    from migrator.runbook.environment import SourceConfig

SERVICE_LABEL = "com.docker.compose.service"


def _source(ctx: Any) -> SourceConfig:
    source = ctx.runbook.environment.source
    if source is None:
        raise PermanentError(f"{ctx.step_id}: the runbook has no environment.source (the VPS)")
    return source  # type: ignore[no-any-return]


def _docker(ctx: Any) -> DockerRemote:
    return remote_for(ctx)


def _by_service(dr: DockerRemote, project: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for c in dr.require_project(project):
        out.setdefault(c.labels.get(SERVICE_LABEL, ""), []).append(c)
    return out


def _healthy(c: Any) -> tuple[bool, str]:
    state = c.attrs.get("State", {})
    if state.get("Status") != "running":
        return False, state.get("Status", "unknown")
    health = (state.get("Health") or {}).get("Status")
    return health in (None, "healthy"), health or "running"


# -- compose.inspect ------------------------------------------------------------------------------

class InspectFacts(Facts):
    """What compose.inspect records: the inventory (adapters/inventory.collect: every container's image,
    image id and registry digests, volumes, databases...) and the coverage summary. images.resolve reads it."""

    inventory: dict[str, Any] = {}
    coverage: Any = None


class InspectParams(StrictModel):
    project: str | None = None  # default: environment.source.compose_project
    expect_services: list[str] = Field(default_factory=list)


@step_type("compose.inspect")
class ComposeInspect(Step[InspectParams]):
    """Record the VPS inventory in facts; gate: every expected service is running and healthy."""

    def _project(self) -> str:
        return self.params.project or _source(self.ctx).compose_project

    def check(self) -> Check:
        return Check(False, "an inventory is taken every time")

    def plan(self) -> Plan:
        return Plan(changes=[f"read the inventory of compose project {self._project()} (changes nothing)"])

    def apply(self) -> None:
        inv = collect(_docker(self.ctx), self._project())
        cov = evaluate(self.ctx.runbook, inv)
        self.ctx.record(inventory=inv, coverage=cov.summary())
        if cov.errors():
            # The coverage gate: nothing stateful is left behind without a reason.
            raise PermanentError(f"{self.ctx.step_id}: coverage {cov.percent}%: " + "; ".join(cov.errors()))

    def verify(self) -> None:
        services = _by_service(_docker(self.ctx), self._project())
        problems = []
        for name in self.params.expect_services:
            containers = services.get(name)
            if not containers:
                problems.append(f"{name}: no container")
                continue
            for c in containers:
                ok, why = _healthy(c)
                if not ok:
                    problems.append(f"{name} ({c.name}): {why}")
        if problems:
            raise GateNotReady("services not running and healthy: " + "; ".join(problems))

    def rollback(self) -> None:
        pass  # nothing was changed

    def report(self) -> dict[str, Any]:
        inv = self.ctx.facts.get("inventory") or {}
        return {"services": sum(len(p["services"]) for p in inv.get("projects", {}).values()),
                "databases": sum(len(d.get("databases", [])) for d in inv.get("databases", [])),
                "coverage": self.ctx.facts.get("coverage")}


# -- compose.freeze -------------------------------------------------------------------------------

class FreezeParams(StrictModel):
    services: list[str] = Field(min_length=1)  # the writers to stop for the cutover
    project: str | None = None
    stop_timeout_s: int = Field(default=30, ge=0, le=600)


class FreezeFacts(Facts):
    """What compose.freeze records before it stops anything; compose.decommission reads it back."""

    was_running: list[str] | None = None  # the containers that ran; None: it has stopped nothing yet


@step_type("compose.freeze")
class ComposeFreeze(Step[FreezeParams]):
    """Stop the writers named in `services`; rollback starts those that were running again."""

    exclusive = "compose"  # one stop/start of Compose services at a time on the VPS

    def _project(self) -> str:
        return self.params.project or _source(self.ctx).compose_project

    def _containers(self) -> list[Any]:
        services = _by_service(_docker(self.ctx), self._project())
        missing = [s for s in self.params.services if s not in services]
        if missing:
            raise PermanentError(f"{self.ctx.step_id}: no service {', '.join(missing)} in compose project "
                                 f"{self._project()} on the VPS (services: {', '.join(sorted(services))})")
        return [c for s in self.params.services for c in services[s]]

    def check(self) -> Check:
        running = [c.name for c in self._containers() if c.status == "running"]
        if running:
            return Check(False, f"still running: {', '.join(running)}")
        return Check(True, f"{', '.join(self.params.services)} stopped")

    def plan(self) -> Plan:
        running = [c.name for c in self._containers() if c.status == "running"]
        return Plan(changes=[f"stop {name}" for name in running])

    def apply(self) -> None:
        containers = self._containers()
        if "was_running" not in self.ctx.facts:  # first attempt: later ones would see our own stops
            self.ctx.record(was_running=[c.name for c in containers if c.status == "running"])
        _stop_running(self.ctx, containers, self.params.stop_timeout_s)

    def verify(self) -> None:
        running = [c.name for c in self._containers() if c.status == "running"]
        if running:
            raise GateNotReady(f"still running: {', '.join(running)}")

    def rollback(self) -> None:
        dr = _docker(self.ctx)
        for name in self.ctx.facts.get("was_running", []):
            try:
                c = dr.client.containers.get(name)
            except docker_api.NotFound:
                raise PermanentError(f"{self.ctx.step_id}: container {name} is gone; bring it back with "
                                     "`docker compose up -d` on the VPS") from None
            if c.status != "running":
                c.start()
        _wait_running(self.ctx, dr, self.ctx.facts.get("was_running", []))

    def rollback_plan(self) -> Plan:
        return Plan(changes=[f"start {n}" for n in self.ctx.facts.get("was_running", [])])


# -- compose.thaw ---------------------------------------------------------------------------------

class ThawParams(StrictModel):
    freeze_step: str  # the compose.freeze step whose services start again


@step_type("compose.thaw")
class ComposeThaw(Step[ThawParams]):
    """Start again what a compose.freeze step stopped, once what needed the freeze is done (Keycloak on
    the VPS after its database was copied: the VPS keeps serving logins until the cutover). Rollback stops
    again those this step started."""

    exclusive = "compose"  # one stop/start of Compose services at a time on the VPS

    def _frozen(self) -> list[str]:
        sid = self.params.freeze_step
        spec = self.ctx.runbook.step(sid).spec if sid in self.ctx.runbook.step_ids() else None
        if spec is None or spec.uses != "compose.freeze":
            raise PermanentError(f"{self.ctx.step_id}.with.freeze_step: {sid} is not a compose.freeze step of "
                                 "this runbook")
        was_running = self.ctx.facts_as(FreezeFacts, sid).was_running
        if was_running is None:
            raise PermanentError(f"{self.ctx.step_id}: {sid} has not stopped anything yet ({self.ctx.status_of(sid)})")
        return list(was_running)

    def _get(self, name: str) -> Any:
        """The container, or None when it was removed since (compose down)."""
        try:
            return _docker(self.ctx).client.containers.get(name)
        except docker_api.NotFound:
            return None

    def _containers(self) -> dict[str, Any]:
        return {name: self._get(name) for name in self._frozen()}

    def _stopped(self) -> list[Any]:
        found = self._containers()
        gone = [name for name, c in found.items() if c is None]
        if gone:
            raise PermanentError(f"{self.ctx.step_id}: container {', '.join(gone)} is gone; bring it back with "
                                 "`docker compose up -d` on the VPS")
        return [c for c in found.values() if c.status != "running"]

    def check(self) -> Check:
        stopped = [c.name for c in self._stopped()]
        return Check(not stopped, f"stopped: {', '.join(stopped)}" if stopped else "running again")

    def plan(self) -> Plan:
        return Plan(changes=[f"start {c.name}" for c in self._stopped()])

    def apply(self) -> None:
        stopped = self._stopped()
        self.ctx.record(started=sorted(set(self.ctx.facts.get("started") or []) | {c.name for c in stopped}))
        for c in stopped:
            self.ctx.log.info("starting", container=c.name)
            c.start()

    def verify(self) -> None:
        pending = []
        for name, c in self._containers().items():
            ok, why = _healthy(c) if c is not None else (False, "gone")
            if not ok:
                pending.append(f"{name}: {why}")
        if pending:
            raise GateNotReady(f"not running and healthy yet: {'; '.join(pending)}")

    def rollback(self) -> None:
        for name in self.ctx.facts.get("started") or []:
            c = self._get(name)
            if c is None:  # removed since (compose down): not running, as rollback wants
                self.ctx.log.info("already gone", container=name)
            elif c.status == "running":
                self.ctx.log.info("stopping", container=name)
                c.stop()

    def rollback_plan(self) -> Plan:
        return Plan(changes=[f"stop {n}" for n in self.ctx.facts.get("started") or []])


def _wait_running(ctx: Any, dr: DockerRemote, names: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + min(timeout, max(5.0, ctx.remaining()))
    while True:
        pending = []
        for name in names:
            c = dr.client.containers.get(name)
            ok, why = _healthy(c)
            if not ok:
                pending.append(f"{name}: {why}")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise PermanentError(f"{ctx.step_id}: not running and healthy after start: {'; '.join(pending)}")
        ctx.sleep(0.5)


# -- compose.decommission -------------------------------------------------------------------------

class QuietParams(StrictModel):
    """How to tell that the old endpoints served no request: log lines of `services` in the window."""

    services: list[str] = Field(min_length=1)  # e.g. [traefik]: the VPS's front door
    match: str = r"\S"  # a regex a request line matches (default: any non-empty line)
    ignore: str | None = None  # a regex for lines that are not client requests (health checks...)


class DecommissionParams(StrictModel):
    after_step: str = "dns-cutover"
    retention_s: float = Field(ge=0)
    quiet: QuietParams
    project: str | None = None
    stop_timeout_s: int = Field(default=30, ge=0, le=600)
    # Stop the containers one at a time (dependents first) before `compose down`, which stops them all at
    # once. Docker 20.10's libnetwork (Debian 12's docker.io 20.10.24, the sandbox's) can deadlock when
    # containers on one network stop together (moby/moby#46661, fixed by moby/moby#42545): compose down
    # then hangs for good. Seen in CI; 24 sandbox containers stop one by one in about 6 s.
    stop_one_by_one: bool = True


@step_type("compose.decommission")
class ComposeDecommission(Step[DecommissionParams]):
    """`docker compose down` (volumes kept) once the retention window has passed with no request served."""

    exclusive = "compose"  # one stop/start of Compose services at a time on the VPS

    def _project(self) -> str:
        return self.params.project or _source(self.ctx).compose_project

    def _compose(self, *args: str) -> list[str]:
        source = _source(self.ctx)
        if not source.compose_dir:
            raise PermanentError(f"{self.ctx.step_id}: environment.source.compose_dir is not set: it is needed for "
                                 "`docker compose down` and to bring the stack back on rollback")
        argv = [source.docker_cli, "compose", "--project-directory", source.compose_dir, "-p", self._project()]
        for f in source.compose_files:
            # Relative compose files are relative to compose_dir on the VPS, not to the SSH login's cwd.
            argv += ["-f", posixpath.join(source.compose_dir, f)]
        if source.env_file:
            argv += ["--env-file", source.env_file]
        return [*argv, *args]

    def _window(self) -> tuple[float, float]:
        """(cutover time, seconds left in the retention window); refused when the cutover did not happen."""
        cutover = self.ctx.finished_at(self.params.after_step)
        if cutover is None:
            raise RefusedError(f"{self.ctx.step_id}: refused: {self.params.after_step} has not succeeded; the old "
                               "stack is decommissioned only after the cutover")
        return cutover, cutover + self.params.retention_s - time.time()

    def _requests(self, dr: DockerRemote, since: float) -> tuple[int, str]:
        """Request lines logged by the front-door services since `since`: (count, the last one)."""
        match, ignore = re.compile(self.params.quiet.match), (
            re.compile(self.params.quiet.ignore) if self.params.quiet.ignore else None)
        services = _by_service(dr, self._project())
        count, last = 0, ""
        for name in self.params.quiet.services:
            if name not in services:
                raise PermanentError(f"{self.ctx.step_id}: quiet.services: no service {name} in project "
                                     f"{self._project()}")
            for c in services[name]:
                text = c.logs(stdout=True, stderr=True, since=int(since), timestamps=False).decode(errors="replace")
                for line in text.splitlines():
                    if match.search(line) and not (ignore and ignore.search(line)):
                        count, last = count + 1, line
        return count, last[:160]

    def check(self) -> Check:
        if not _docker(self.ctx).project_containers(self._project()):
            return Check(True, f"no container of project {self._project()} left")
        return Check(False, "the stack is still there")

    def plan(self) -> Plan:
        plan = Plan(changes=[f"on the VPS: {' '.join(self._compose('down'))} (volumes kept)"])
        if self.params.stop_one_by_one:
            plan.changes.insert(0, "stop the running containers one at a time, dependents first")
        cutover = self.ctx.finished_at(self.params.after_step)
        if cutover is None:
            plan.waits.append(f"{self.params.after_step} has not succeeded yet")
        else:
            left = cutover + self.params.retention_s - time.time()
            if left > 0:
                plan.waits.append(f"retention window: {left:.0f} s left")
        plan.unknowns.append(f"whether {', '.join(self.params.quiet.services)} served requests in the last "
                             f"{self.params.retention_s:g} s")
        return plan

    def apply(self) -> None:
        _, left = self._window()
        if left > 0:
            raise RefusedError(f"{self.ctx.step_id}: refused: retention window after {self.params.after_step} not over "
                               f"({left:.0f} s left, until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(time.time() + left))})")
        dr = _docker(self.ctx)
        count, last = self._requests(dr, time.time() - self.params.retention_s)
        if count:
            raise RefusedError(f"{self.ctx.step_id}: refused: the old endpoints served {count} request(s) in the last "
                               f"{self.params.retention_s:g} s (last: {last!r}); find who still uses the VPS first")
        containers = dr.project_containers(self._project())
        volumes = sorted({m["Name"] for c in containers for m in c.attrs.get("Mounts", []) if m.get("Type") == "volume"})
        if "containers" not in self.ctx.facts:
            self.ctx.record(containers=sorted(c.name for c in containers), volumes=volumes,
                            was_running=sorted(c.name for c in containers if c.status == "running"))
        if self.params.stop_one_by_one:
            _stop_running(self.ctx, dependents_first(containers), self.params.stop_timeout_s)
        res = _ssh(self.ctx).run(self._compose("down", "--timeout", str(self.params.stop_timeout_s)),
                                 timeout=max(30.0, self.ctx.remaining()))
        if res.rc != 0:
            networks = self._networks_left_only(dr, res.stderr.decode(errors="replace"))
            if not networks:
                raise PermanentError(f"{self.ctx.step_id}: docker compose down on {_ssh(self.ctx).label} exited "
                                     f"{res.rc}: {res.err_line()}")
            # Every container is gone (the stack is down, volumes kept); only networks dockerd would not
            # remove ("has active endpoints": endpoints left over inside dockerd) remain. They hold no data
            # and `compose up` reuses them: recorded and logged, not a failure of the decommission.
            self.ctx.record(networks_left=networks)
            self.ctx.log.warning("compose down left networks dockerd would not remove", networks=networks,
                                 error=res.err_line())

    def _networks_left_only(self, dr: DockerRemote, stderr: str) -> list[str]:
        """The networks compose down could not remove, when that is its only failure (else [])."""
        if dr.project_containers(self._project()):
            return []
        return networks_only_failure(stderr)

    def verify(self) -> None:
        dr = _docker(self.ctx)
        left = [c.name for c in dr.project_containers(self._project())]
        if left:
            raise GateNotReady(f"containers still there: {', '.join(left)}")
        names = {v.name for v in dr.client.volumes.list()}
        lost = [v for v in self.ctx.facts.get("volumes", []) if v not in names]
        if lost:
            raise PermanentError(f"{self.ctx.step_id}: volumes gone after compose down: {', '.join(lost)}")

    def rollback(self) -> None:
        res = _ssh(self.ctx).run(self._compose("up", "-d"), timeout=max(60.0, self.ctx.remaining()))
        if res.rc != 0:
            raise PermanentError(f"{self.ctx.step_id}: docker compose up -d on {_ssh(self.ctx).label} exited "
                                 f"{res.rc}: {res.err_line()}")
        _wait_running(self.ctx, _docker(self.ctx), self.ctx.facts.get("was_running", []))

    def rollback_plan(self) -> Plan:
        return Plan(changes=[f"on the VPS: {' '.join(self._compose('up', '-d'))}"])


def _stop_running(ctx: Any, containers: list[Any], timeout_s: int) -> None:
    """Stop the running ones among `containers`, one at a time, in the order given."""
    for c in containers:
        if c.status == "running":
            ctx.log.info("stopping", container=c.name)
            c.stop(timeout=timeout_s)


def dependents_first(containers: list[Any]) -> list[Any]:
    """Compose containers in an order that stops a service before those it depends on (compose's own
    label `com.docker.compose.depends_on`: "db:service_healthy:false,cache:..."); a cycle keeps its order."""
    def service(c: Any) -> str:
        return str(c.labels.get("com.docker.compose.service", c.name))

    def needs(c: Any) -> set[str]:
        spec = c.labels.get("com.docker.compose.depends_on", "")
        return {part.split(":", 1)[0] for part in spec.split(",") if part}

    left, order = list(containers), []
    while left:
        needed = set().union(*(needs(c) for c in left))
        ready = [c for c in left if service(c) not in needed] or left  # or a cycle: as they are
        order += ready
        left = [c for c in left if c not in ready]
    return order


def networks_only_failure(stderr: str) -> list[str]:
    """From `docker compose down`'s stderr: the networks it failed to remove, if every error line is one of
    those (else []: something else failed too)."""
    networks = set(re.findall(r"failed to remove network (\S+?):", stderr))
    if not networks:
        return []
    for line in stderr.splitlines():
        if "error" not in line.lower() and "failed" not in line.lower():
            continue
        if "failed to remove network" in line:
            continue
        # compose's progress line for the same network (" Network sevensa_ai  Error") is part of it too
        progress = re.fullmatch(r"\s*Network (\S+)\s+Error\s*", line)
        if progress is None or progress.group(1) not in networks:
            return []
    return sorted(networks)


def _ssh(ctx: Any) -> Any:
    return session_for(ctx)
