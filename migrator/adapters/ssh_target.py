"""Where an SSH connection goes and which host keys it trusts: the runbook's `environment.source.ssh`
merged with ~/.ssh/config (Host aliases, HostName, Port, User, IdentityFile, UserKnownHostsFile,
ProxyJump, ProxyCommand), the hops of a ProxyJump chain, key files that need a passphrase, and the
rehearsal-only policy that records an unknown host key. `ssh.SSHSession` connects to what this resolves.
"""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.adapters.lazy import lazy
from migrator.runbook.environment import SSHConfig

if TYPE_CHECKING:
    import paramiko
else:
    paramiko = lazy("paramiko")


@dataclass
class Target:
    """Where to connect, after merging the runbook with ~/.ssh/config."""

    alias: str
    hostname: str
    port: int
    user: str
    key_files: list[str]
    known_hosts: Path
    proxy_jump: str | None = None
    proxy_command: str | None = None
    config: SSHConfig | None = None
    use_agent: bool = True  # ssh-agent (SSH_AUTH_SOCK) as well as the key files
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def key_label(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def _expand(path: str, base_dir: Path) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else base_dir / p


def resolve_target(cfg: SSHConfig, base_dir: Path, alias: str | None = None) -> Target:
    """Merge the runbook's fields (first) with ~/.ssh/config (second) and the defaults."""
    config_path = _expand(cfg.config_file, base_dir) if cfg.config_file else Path.home() / ".ssh" / "config"
    host_cfg: dict[str, Any] = {}
    name = alias or cfg.host
    if config_path.is_file():
        ssh_config = paramiko.SSHConfig.from_path(str(config_path))
        host_cfg = dict(ssh_config.lookup(name))
    direct = alias is None  # the runbook's own fields apply to the main host, not to a jump host
    hostname = host_cfg.get("hostname", name)
    port = (cfg.port if direct and cfg.port else None) or int(host_cfg.get("port", 22))
    user = (cfg.user if direct and cfg.user else None) or host_cfg.get("user") or getpass.getuser()
    keys = [str(_expand(cfg.key_file, base_dir))] if direct and cfg.key_file else list(host_cfg.get("identityfile", []))
    if direct and cfg.known_hosts:
        known = _expand(cfg.known_hosts, base_dir)
    elif host_cfg.get("userknownhostsfile"):
        known = Path(os.path.expanduser(str(host_cfg["userknownhostsfile"]).split()[0]))
    else:
        known = Path.home() / ".ssh" / "known_hosts"
    jump = (cfg.proxy_jump if direct else None) or host_cfg.get("proxyjump")
    if jump and jump.lower() == "none":
        jump = None
    command = host_cfg.get("proxycommand")
    if command and command.lower() == "none":
        command = None
    return Target(alias=name, hostname=hostname, port=int(port), user=user, key_files=keys, known_hosts=known,
                  proxy_jump=jump, proxy_command=command, config=cfg, use_agent=cfg.use_agent)


def jump_hops(spec: str) -> list[str]:
    """A ProxyJump list `a,b,c` (OpenSSH: connect to a, through it to b, through b to c, then on)."""
    hops = [h.strip() for h in spec.split(",") if h.strip()]
    return [] if hops == ["none"] else hops


def parse_jump(hop: str) -> tuple[str | None, str, int | None]:
    """One hop of a ProxyJump list, `[user@]host[:port]` or `ssh://[user@]host[:port]` -> (user, host, port)."""
    first = hop.strip().removeprefix("ssh://")
    user = None
    if "@" in first:
        user, first = first.rsplit("@", 1)
    port = None
    if first.startswith("["):
        host, _, rest = first[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
    elif first.count(":") == 1:
        host, p = first.split(":")
        port = int(p)
    else:
        host = first
    return user, host, port


def needs_passphrase(path: str) -> bool:
    """Whether the private key file is encrypted (a key paramiko cannot read at all is left to connect)."""
    try:
        paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        return True
    except TypeError as exc:  # cryptography's loaders: "... password-protected, but password was not provided"
        return "password" in str(exc).lower()
    except Exception:
        return False
    return False


def locked_message(t: Target, locked: list[str]) -> str:
    where = "is not in the running ssh-agent" if t.use_agent and os.environ.get("SSH_AUTH_SOCK") else (
        "and no ssh-agent is available (SSH_AUTH_SOCK unset)" if t.use_agent else "and use_agent is false")
    return (f"ssh {t.label}: key {', '.join(locked)} needs a passphrase {where}; migrate never prompts "
            f"for one: load it with `ssh-add {locked[0]}` and keep SSH_AUTH_SOCK set")


def accept_new_host_key_policy(known_hosts: Path) -> paramiko.MissingHostKeyPolicy:
    """Rehearsals only (`accept_unknown_host_key: true`): trust an UNKNOWN key and write it to known_hosts."""
    return _accept_new_policy_class()(known_hosts)


@functools.cache
def _accept_new_policy_class() -> Callable[[Path], paramiko.MissingHostKeyPolicy]:
    # Made on first use: the base class is paramiko's, and paramiko is imported only when a session connects.
    class RehearsalAcceptNewHostKeyPolicy(paramiko.MissingHostKeyPolicy):
        """Rehearsals only (`accept_unknown_host_key: true`): trust an UNKNOWN key and write it to known_hosts.

        A key that differs from a recorded one never reaches this policy: paramiko raises BadHostKeyException.
        """

        def __init__(self, known_hosts: Path) -> None:
            self.known_hosts = known_hosts

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self.known_hosts.open("a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")

    return RehearsalAcceptNewHostKeyPolicy
