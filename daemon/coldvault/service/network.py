"""Whether the daemon needs the network, and the systemd drop-in that grants it.

The hardened unit allows no IP (``RestrictAddressFamilies=AF_UNIX AF_NETLINK``,
``IPAddressDeny=any``). ``coldvault install-service`` writes
``coldvault.service.d/network.conf`` only when the configuration sends
something over the network, so a configuration without pings, notifications or
offsite copies keeps the unit without network.
"""

from __future__ import annotations

from coldvault.config.model import Config

DROPIN_DIR = "coldvault.service.d"
DROPIN_NAME = "network.conf"
DROPIN = """\
# Written by `coldvault install-service`: the configuration sends pings,
# notifications or offsite copies, which need IP. The unit itself allows only AF_UNIX and
# AF_NETLINK and no IP address; this adds IPv4 and IPv6 and lifts the address
# deny list. Delete this file and run `systemctl daemon-reload` once nothing in
# the configuration needs the network any more.
[Service]
RestrictAddressFamilies=AF_INET AF_INET6
IPAddressDeny=
"""


def needs_network(config: Config) -> bool:
    """True when the configuration sends anything over the network."""
    s = config.settings
    reasons = (
        s.ping is not None or any(job.ping is not None for job in config.jobs),  # pings
        bool(s.notify),  # Apprise notifications
        any(not t.repository.startswith("/") for t in config.offsite),  # remote restic
    )
    return any(reasons)
