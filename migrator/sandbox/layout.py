"""Every fixed address, port, name and path of the sandbox, in one place.

All addresses are on the loopback network (127.0.0.0/8): Linux routes the whole /8 to ``lo``.
Only one sandbox can run on a machine at a time because these ports are fixed.

| what                                  | address                |
|---------------------------------------|------------------------|
| sshd (the VPS's front door)           | 127.0.0.1:22022        |
| BIND primary (ns1)                    | 127.0.0.1:15353        |
| BIND secondary (ns2, AXFR + NOTIFY)   | 127.0.0.1:15354        |
| Kubernetes API stand-in               | 127.0.0.1:16443        |
| cluster ingress stand-in              | 127.0.0.20:18080       |
| VPS Traefik stand-in (published)      | 127.0.0.10:18080       |
| VPS OpenBao (published on VPS lo)     | 127.0.0.1:18200        |
| target Postgres rentguy/psra/wpcs/kc  | 127.0.0.1:25432-25435  |
| target OpenBao                        | 127.0.0.1:28200 (+1 cluster) |
| target Keycloak (stand-in on the host)| 127.0.0.1:28080        |

named only listens on addresses configured on an interface; ``lo`` carries 127.0.0.1 only, so the
secondary uses another port rather than 127.0.0.2 (no change to the host's network configuration).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# --- addresses -----------------------------------------------------------------------------------
LOOPBACK = "127.0.0.1"
VPS_ADDRESS = "127.0.0.10"  # the VPS's public address in DNS
INGRESS_ADDRESS = "127.0.0.20"  # the cluster's ingress address

SSH_HOST = LOOPBACK
SSH_PORT = 22022
SSH_USER = "root"

DNS_PRIMARY_HOST = LOOPBACK
DNS_PRIMARY_PORT = 15353
DNS_SECONDARY_HOST = LOOPBACK
DNS_SECONDARY_PORT = 15354
DNS_ZONE = "sevensa.test"
DNS_TTL = 3600
TSIG_KEY_NAME = "migrator-key"
NS1_ADDRESS = "127.0.0.1"
NS2_ADDRESS = "127.0.0.2"  # symbolic A record for ns2; the server itself listens on 127.0.0.1:15354

KUBE_API_PORT = 16443
INGRESS_PORT = 18080
TRAEFIK_HOST = VPS_ADDRESS
TRAEFIK_PORT = 18080

SOURCE_OPENBAO_HOST = LOOPBACK  # published on the VPS's loopback only
SOURCE_OPENBAO_PORT = 18200
SOURCE_OPENBAO_INTERNAL_PORT = 8200

TARGET_OPENBAO_PORT = 28200
TARGET_OPENBAO_CLUSTER_PORT = 28201

#: the cluster's Keycloak (no pod runs here): the Keycloak stand-in as a host process
TARGET_KEYCLOAK_PORT = 28080

#: target data plane: one PostgreSQL cluster per StatefulSet
TARGET_PG_PORTS: dict[str, int] = {"rentguy": 25432, "psra": 25433, "wpcs": 25434, "keycloak": 25435}
TARGET_PG_SUPERUSER = "postgres"
#: target data plane: WPCS's WordPress MariaDB and RentGuy's Redis (Debian's servers on the host)
TARGET_MYSQL_PORT = 23306
TARGET_REDIS_PORT = 26379
#: the cluster's n8n and Grafana (no pod runs here): the app stand-in as a host process reading its PVC
#: directory, proxied to by the ingress stand-in: Service (ns/name) -> (port, PVC, env key of the data dir)
TARGET_APPS: dict[str, tuple[int, str, str]] = {
    "ai/ai-n8n": (28081, "ai-n8n-data", "N8N_USER_FOLDER"),
    "monitoring/grafana": (28082, "grafana-data", "GF_PATHS_DATA"),
}
#: the namespace of each claim that a volume of the VPS is copied into
PVC_NAMESPACES: dict[str, str] = {"wpcs-uploads": "wpcs", "ai-n8n-data": "ai", "grafana-data": "monitoring"}
#: the claims the VPS's volumes are copied into: PVC name -> (compose volume, service, mount in the container)
PVC_VOLUMES: dict[str, tuple[str, str, str]] = {
    "wpcs-uploads": ("wpcs-uploads", "wpcs-wordpress", "/var/www/html/wp-content/uploads"),
    "ai-n8n-data": ("n8n-data", "ai-n8n", "/home/node/.n8n"),
    "grafana-data": ("grafana-data", "grafana", "/var/lib/grafana"),
}

# --- compose -------------------------------------------------------------------------------------
COMPOSE_PROJECT = "sevensa"
COMPOSE_FILE = Path(__file__).resolve().parent / "compose" / "compose.yaml"
STANDINS_DIR = Path(__file__).resolve().parent / "standins"

#: source databases: name -> (compose service, db name, user, env key of the password)
SOURCE_DATABASES: dict[str, tuple[str, str, str, str]] = {
    "rentguy": ("rentguy-db", "rentguy", "rentguy", "RENTGUY_DB_PASSWORD"),
    "psra": ("psra-db", "psra", "psra", "PSRA_DB_PASSWORD"),
    "wpcs": ("wpcs-db", "wpcs", "wpcs", "WPCS_DB_PASSWORD"),
    "keycloak": ("keycloak-db", "keycloak", "keycloak", "KEYCLOAK_DB_PASSWORD"),
}

#: WordPress's own database (MariaDB): service, database, application user, env keys of the passwords
SOURCE_MYSQL = ("wpcs-mysql", "wordpress", "wordpress", "WPCS_MYSQL_PASSWORD", "WPCS_MYSQL_ROOT_PASSWORD")
#: RentGuy's Redis: service, env key of its password
SOURCE_REDIS = ("rentguy-redis", "RENTGUY_REDIS_PASSWORD")

UPLOADS_VOLUME = "wpcs-uploads"
UPLOADS_SERVICE = "wpcs-wordpress"
UPLOADS_MOUNT = "/var/www/html/wp-content/uploads"

#: public hostnames (all A VPS_ADDRESS) -> (compose service, container port)
PUBLIC_HOSTS: dict[str, tuple[str, int]] = {
    "rentguy": ("rentguy-frontend", 8080),
    "api.rentguy": ("rentguy-api", 8080),
    "psra": ("psra-frontend", 8080),
    "api.psra": ("psra-api", 8080),
    "wpcs": ("wpcs-wordpress", 8080),
    "api.wpcs": ("wpcs-api", 8080),
    "n8n": ("ai-n8n", 8080),
    "chat": ("ai-claude-chat", 8080),
    "trading": ("ai-trading-dashboard", 8080),
    "langgraph": ("ai-langgraph", 8080),
    "auth": ("keycloak", 8080),
    "vault": ("openbao", 8200),
    "grafana": ("grafana", 8080),
    "prometheus": ("prometheus", 8080),
    "alertmanager": ("alertmanager", 8080),
    "traefik": ("traefik", 8080),
}

# --- images (built locally, no registry) ---------------------------------------------------------
IMAGE_BASE = "sevensa-sandbox/base:busybox"
IMAGE_POSTGRES = "sevensa-sandbox/postgres:15"
IMAGE_OPENBAO = "sevensa-sandbox/openbao:2"
IMAGE_STANDIN = "sevensa-sandbox/standin:py311"
IMAGE_MARIADB = "sevensa-sandbox/mariadb:10.11"
IMAGE_REDIS = "sevensa-sandbox/redis:7"
IMAGE_HASH_LABEL = "io.sevensa.sandbox.content-hash"

# --- paths ---------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[2]
DIR_ENV = "MIGRATE_SANDBOX_DIR"


def default_dir() -> Path:
    """``$MIGRATE_SANDBOX_DIR`` when set; else ``<checkout>/state/sandbox`` when migrate runs from a
    source checkout (where runbooks/sandbox.yaml looks for it); else ``./state/sandbox``, like the
    state directory's own default: never a folder inside an installed package."""
    env = os.environ.get(DIR_ENV)
    if env:
        return Path(env).resolve()
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "runbooks" / "sandbox.yaml").is_file():
        return REPO_ROOT / "state" / "sandbox"
    return Path("state", "sandbox").resolve()


@dataclass(frozen=True)
class Paths:
    """Where everything lives under one sandbox directory."""

    root: Path

    # docker
    @property
    def docker(self) -> Path:
        return self.root / "docker"

    @property
    def docker_sock(self) -> Path:
        return self.docker / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_sock}"

    @property
    def docker_config(self) -> Path:
        return self.docker / "config"

    @property
    def dockerd_pid(self) -> Path:
        return self.docker / "dockerd.pid"

    # the cluster's node: a second private dockerd that runs the pods
    @property
    def node(self) -> Path:
        return self.root / "node"

    @property
    def node_docker_host(self) -> str:
        return f"unix://{self.node / 'docker.sock'}"

    @property
    def node_pid(self) -> Path:
        return self.node / "dockerd.pid"

    # ssh
    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_user_key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def ssh_known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def ssh_home(self) -> Path:
        """A HOME whose ~/.ssh/config and known_hosts point at the sandbox (for the Docker SDK)."""
        return self.ssh / "home"

    @property
    def sshd_pid(self) -> Path:
        return self.ssh / "sshd.pid"

    # platform
    @property
    def env_file(self) -> Path:
        return self.root / "sevensa.env"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def openbao(self) -> Path:
        return self.root / "openbao"

    @property
    def dns(self) -> Path:
        return self.root / "dns"

    @property
    def tsig_key_file(self) -> Path:
        return self.dns / "tsig.key"

    @property
    def dataplane(self) -> Path:
        return self.root / "dataplane"

    @property
    def kubelet(self) -> Path:
        return self.node / "kubelet"

    @property
    def uploads_pvc(self) -> Path:
        return self.pvc_dir("wpcs-uploads")

    def pvc_dir(self, name: str) -> Path:
        """A claim's storage on the node, through the kubelet's stable link (kubeapi/kubelet.py claim_link):
        what a pod that mounts the claim sees. It exists once a pod (volume.copy's helper) has mounted it."""
        return self.kubelet / "storage" / "by-claim" / PVC_NAMESPACES[name] / name

    @property
    def target_keycloak(self) -> Path:
        return self.root / "target-keycloak"

    @property
    def target_keycloak_env(self) -> Path:
        """The target Keycloak's environment (KEY=value, mode 0600); a change makes it restart itself."""
        return self.target_keycloak / "keycloak.env"

    @property
    def kube(self) -> Path:
        return self.root / "kube"

    @property
    def logs(self) -> Path:
        return self.root / "logs"
