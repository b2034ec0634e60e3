"""Stand-ins for registrars' DNS APIs (TransIP v6, Cloudflare v4) over HTTPS on loopback, writing into the
sandbox's real BIND zone: the migrator's provider adapters talk to them as to the real APIs, and the
check on every authoritative server stays real DNS."""
