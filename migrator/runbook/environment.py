"""The `environment:` section of a runbook: where the source, the target and DNS are.

Each section is owned by the adapters that read it (ssh/docker: `source`; kube: `target`; dns: `dns`;
openbao: `openbao`). Phases never hold environment facts: they reference them as
`${environment.target.ingress_address}`, so sandbox, kind and production share the same phases.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from migrator.runbook.base import StrictModel


class HostPort(StrictModel):
    host: str
    port: int = Field(ge=1, le=65535)


class SSHConfig(StrictModel):
    """How to reach the VPS. Values left out come from ~/.ssh/config (Host alias, IdentityFile...)."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    config_file: str | None = None  # default ~/.ssh/config
    # Rehearsals only: accept and remember an unknown host key. Never for production.
    accept_unknown_host_key: bool = False
    keepalive_s: int = 15
    connect_timeout_s: float = 10
    # Environment of the far side for `docker system dial-stdio`, when sshd does not set it.
    docker_host: str | None = None
    # [user@]host[:port][,...] (a chain, as OpenSSH: the first hop first); default: ~/.ssh/config's
    proxy_jump: str | None = None
    # ssh-agent (SSH_AUTH_SOCK) is offered alongside the key files; a key that needs a passphrase is
    # only usable through it (migrate never prompts). false: key files only.
    use_agent: bool = True
    reconnect_attempts: int = Field(default=3, ge=0, le=20)  # per use, with backoff, after a dropped connection
    # Sessions (channels running a command) open at once on the connection: at most the VPS sshd's
    # MaxSessions (OpenSSH default 10), which refuses the rest.
    max_sessions: int = Field(default=10, ge=4, le=1000)


class SourceConfig(StrictModel):
    """The VPS running Docker Compose."""

    ssh: SSHConfig
    address: str  # the VPS's public address: what DNS points at before cutover and after rollback
    compose_project: str = "sevensa"
    compose_dir: str | None = None  # where the compose file lives on the VPS, for `compose up/down`
    compose_files: list[str] = Field(default_factory=list)
    env_file: str | None = None  # on the VPS
    docker_cli: str = "docker"  # the docker command on the VPS (for `compose down/up` and dial-stdio)


class EndpointConfig(StrictModel):
    """A data-plane endpoint standing for a pod (sandbox) or reached by port-forward (real cluster)."""

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    namespace: str | None = None
    pod: str | None = None  # for exec/port-forward on a real cluster
    container: str | None = None
    remote_port: int | None = None
    path: str | None = None  # for volume targets standing in for a PVC (sandbox)


class TargetConfig(StrictModel):
    """The Kubernetes cluster."""

    kubeconfig: str | None = None  # default: $KUBECONFIG, then ~/.kube/config
    context: str | None = None
    ingress_address: str  # what DNS points at after cutover
    ingress_port: int = 443
    ingress_scheme: Literal["http", "https"] = "https"
    storage_class: str = "standard"
    # How the migrator reaches the data inside pods: 'endpoint' uses `endpoints` directly (the
    # sandbox's stand-in servers); 'port-forward' and 'exec' go through the API server.
    data_access: Literal["endpoint", "port-forward", "exec"] = "port-forward"
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    volume_paths: dict[str, str] = Field(default_factory=dict)  # data_access endpoint: PVC name -> host directory
    # The image of the helper pods the migrator runs on claims (sh, tar, find, stat, sha256sum).
    helper_image: str = "busybox:1.36"


class TSIGConfig(StrictModel):
    name: str
    algorithm: str | None = None  # default: the key file's, else hmac-sha256
    # The name of a runbook secret holding the key: bare base64, or BIND's key file (as tsig-keygen
    # writes it); read and checked at load (migrator/runbook/tsig.py).
    secret: str


class TransipConfig(StrictModel):
    """TransIP's REST API v6: an account name and an API key pair (the private key, PEM, as a secret)."""

    username: str
    private_key: str  # the name of a runbook secret holding the PEM private key
    global_key: bool = False  # a key without TransIP's IP whitelist


class CloudflareConfig(StrictModel):
    """Cloudflare's API v4 with an API token (Zone:Read + DNS:Edit)."""

    token: str  # the name of a runbook secret holding the API token
    zone_id: str | None = None  # set it when the token is scoped to the one zone (no zone listing then)


DNSProviderName = Literal["rfc2136", "transip", "cloudflare"]


class DNSConfig(StrictModel):
    provider: DNSProviderName = "rfc2136"
    zone: str
    primary: HostPort | None = None  # rfc2136: where updates are sent
    tsig: TSIGConfig | None = None  # rfc2136
    transip: TransipConfig | None = None
    cloudflare: CloudflareConfig | None = None
    # HTTP API providers: the API's base URL (default the provider's public one; tests point it at a
    # stand-in) and the CA bundle its certificate is verified against (default the system's).
    api_url: str | None = None
    ca_file: str | None = None  # relative to the runbook
    # NS host name -> address to ask it at (the sandbox's servers listen on loopback ports).
    nameservers: dict[str, HostPort] = Field(default_factory=dict)
    resolvers: list[HostPort] = Field(default_factory=list)
    timeout_s: float = 3

    @model_validator(mode="after")
    def _provider_section(self) -> DNSConfig:
        need = {"rfc2136": ("primary", "tsig"), "transip": ("transip",), "cloudflare": ("cloudflare",)}
        missing = [f for f in need[self.provider] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"provider {self.provider} needs {' and '.join(missing)}")
        others = [f for p, fields in need.items() if p != self.provider for f in fields
                  if f not in need[self.provider] and getattr(self, f) is not None]
        if others:
            raise ValueError(f"{', '.join(others)} given but the provider is {self.provider}")
        if self.provider == "rfc2136" and (self.api_url or self.ca_file):
            raise ValueError("api_url and ca_file are for the HTTP API providers (transip, cloudflare)")
        return self


class PortForward(StrictModel):
    """A pod's port that the migrator reaches through the API server (pods/portforward), opening and closing
    the forward itself. `pod` names the pod; `selector` (labels) picks a Running, Ready pod of a workload
    afresh for every connection, so a rollout or restart that replaces the pod is followed."""

    namespace: str
    pod: str | None = None
    selector: dict[str, str] | None = None
    port: int = Field(ge=1, le=65535)

    @model_validator(mode="after")
    def _one_target(self) -> PortForward:
        if (self.pod is None) == (not self.selector):
            raise ValueError("give exactly one of pod or selector")
        return self


class OpenBaoEndpoint(StrictModel):
    address: str  # e.g. https://vault.sevensa.nl:8200 or http://127.0.0.1:28200
    # When set, requests go through a port-forward to this pod's port; `address` keeps the scheme, path and
    # the host name TLS is verified for.
    port_forward: PortForward | None = None
    token: str | None = None  # the name of a runbook secret
    ca_file: str | None = None
    tls_verify: bool = True
    timeout_s: float = Field(default=30, gt=0)  # per HTTP request


class OpenBaoConfig(StrictModel):
    source: OpenBaoEndpoint
    target: OpenBaoEndpoint
    # When set, the source is reached through an SSH tunnel to this address as seen from the VPS.
    source_via_ssh: HostPort | None = None


class KeycloakEndpoint(StrictModel):
    url: str  # base URL, e.g. https://auth.sevensa.nl or http://127.0.0.1:18080
    # When set, requests go through a port-forward to the pod (http only: `url`'s host is replaced).
    port_forward: PortForward | None = None
    host_header: str | None = None  # when `url` is an address standing in for the public name
    admin_user: str = "admin"
    admin_password: str | None = None  # the name of a runbook secret (master realm, admin-cli)
    ca_file: str | None = None
    tls_verify: bool = True
    timeout_s: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _forward_is_http(self) -> KeycloakEndpoint:
        if self.port_forward is not None and not self.url.startswith("http://"):
            raise ValueError("port_forward needs an http:// url (the pod's own port; TLS ends at the ingress)")
        return self


class KeycloakConfig(StrictModel):
    source: KeycloakEndpoint
    target: KeycloakEndpoint
    realms: list[str] = Field(default_factory=list)  # default: every realm of the source


class Environment(StrictModel):
    source: SourceConfig | None = None
    target: TargetConfig | None = None
    dns: DNSConfig | None = None
    openbao: OpenBaoConfig | None = None
    keycloak: KeycloakConfig | None = None
