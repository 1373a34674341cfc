"""The tests' view of a Kafka + Redis pair: where it is and how a Loom client connects to it.

Two kinds, one interface (:class:`Servers`), so that the same test body runs on both:

* *plain*: the session's servers (``tests/conftest.py``: environment, Docker or
  ``deploy/infra.sh``), PLAINTEXT Kafka and ``redis://`` without a password;
* *secured*: ``deploy/infra.sh`` in secured mode on free loopback ports: Kafka over SASL_SSL
  (SCRAM-SHA-512, the generated CA), Redis over TLS with an ACL user per key prefix created
  with exactly :func:`streams.redis_clients.acl_rules` (what the README tells operators).

``settings(prefix)`` gives the :class:`LoomSettings` of a Loom client in-process;
``environ(prefix)`` the environment of a Loom subprocess (worker, CLI), secrets as
``LOOM_*_FILE`` paths as a Kubernetes deployment would mount them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from streams import redis_clients
from streams.redis_clients import acl_rules
from streams.settings import LoomSettings


@dataclass
class Servers:
    kind: str  # "plain" or "secured"
    kafka_bootstrap: str
    redis_url: str
    #: a Redis client with every right (fixtures clean up and inspect with it)
    admin_redis: Callable[[], redis.Redis]
    #: LoomSettings fields besides the two above (Kafka security, Redis TLS)
    connection: dict[str, Any] = field(default_factory=dict)
    #: the same as environment variables for subprocesses (secrets as *_FILE paths)
    connection_env: dict[str, str] = field(default_factory=dict)
    #: where per-prefix ACL passwords are written (secured only)
    secrets_dir: Path | None = None
    _users: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def secured(self) -> bool:
        return self.kind == "secured"

    def redis_user(self, prefix: str) -> tuple[str, str] | None:
        """(user, password) of the ACL user limited to ``prefix`` (created once), or None."""
        if not self.secured:
            return None
        if prefix not in self._users:
            user, password = f"loom-{prefix}", secrets.token_hex(16)
            admin = self.admin_redis()
            try:
                rules = acl_rules(prefix).split()
                admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
            finally:
                admin.close()
            self._users[prefix] = (user, password)
        return self._users[prefix]

    def settings(self, prefix: str = "loom", **overrides: Any) -> LoomSettings:
        fields: dict[str, Any] = {
            "kafka_bootstrap": self.kafka_bootstrap,
            "redis_url": self.redis_url,
            "redis_prefix": prefix,
            "development": True,
            **self.connection,
        }
        if (user := self.redis_user(prefix)) is not None:
            fields |= {"redis_username": user[0], "redis_password": user[1]}
        return LoomSettings(**{**fields, **overrides})

    def environ(self, prefix: str) -> dict[str, str]:
        env = {
            "LOOM_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "LOOM_REDIS_URL": self.redis_url,
            "LOOM_REDIS_PREFIX": prefix,
            "LOOM_DEVELOPMENT": "true",
            **self.connection_env,
        }
        if (user := self.redis_user(prefix)) is not None and self.secrets_dir is not None:
            path = self.secrets_dir / f"redis-{user[0]}-password"
            path.write_text(user[1] + "\n")
            path.chmod(0o600)
            env |= {"LOOM_REDIS_USERNAME": user[0], "LOOM_REDIS_PASSWORD_FILE": str(path)}
        return env

    def delete_users(self) -> None:
        if self._users:
            admin = self.admin_redis()
            try:
                admin.execute_command("ACL", "DELUSER", *(u for u, _ in self._users.values()))
            finally:
                admin.close()
            self._users.clear()


def plain(kafka_bootstrap: str, redis_url: str) -> Servers:
    return Servers(
        "plain",
        kafka_bootstrap,
        redis_url,
        lambda: redis.Redis.from_url(redis_url),
    )


def secured(kafka_sasl_ssl: str, redis_tls_port: int, tls_dir: Path) -> Servers:
    """The secured pair of ``deploy/infra.sh`` (LOOM_INFRA_SECURED=yes) with its ``tls_dir``."""
    ca = tls_dir / "ca.pem"
    password = (tls_dir / "kafka-password").read_text().strip()
    redis_url = f"rediss://127.0.0.1:{redis_tls_port}/0"
    admin = LoomSettings(
        redis_url=redis_url,
        redis_password=(tls_dir / "redis-admin-password").read_text().strip(),
        redis_ssl_ca_file=ca,
    )
    return Servers(
        "secured",
        kafka_sasl_ssl,
        redis_url,
        lambda: redis_clients.client(admin),
        connection={
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": "loom",
            "kafka_sasl_password": password,
            "kafka_ssl_ca_file": ca,
            "redis_ssl_ca_file": ca,
        },
        connection_env={
            "LOOM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LOOM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LOOM_KAFKA_SASL_USERNAME": "loom",
            "LOOM_KAFKA_SASL_PASSWORD_FILE": str(tls_dir / "kafka-password"),
            "LOOM_KAFKA_SSL_CA_FILE": str(ca),
            "LOOM_REDIS_SSL_CA_FILE": str(ca),
        },
        secrets_dir=tls_dir,
    )
