"""Who may talk to svcbot as Teams, and where svcbot may talk back.

Teams is off unless MICROSOFT_APP_ID is set (every activity then carries a Bot Framework token) or the
emulator mode is switched on with SVCBOT_TEAMS_EMULATOR=1 (unauthenticated activities, from loopback
only). An activity's ``serviceUrl`` is where replies go: svcbot posts only to Bot Framework hosts (or
those app.yaml's ``teams.service_hosts`` lists), and a stored one is replaced only by an activity whose
token vouches for it. No botbuilder import here: the server decides about Teams without loading it.
"""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

EMULATOR_VARIABLE = "SVCBOT_TEAMS_EMULATOR"


def teams_mode(env: Mapping[str, str] = os.environ) -> str | None:
    """'credentials', 'emulator' or None (Teams is off). A credential always wins over the emulator mode."""
    flag = (env.get(EMULATOR_VARIABLE) or "").strip()
    if flag not in ("", "0", "1"):
        raise SystemExit(f"{EMULATOR_VARIABLE} must be 1 (on) or unset, not {flag!r}")
    if env.get("MICROSOFT_APP_ID"):
        return "credentials"
    return "emulator" if flag == "1" else None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def peer_host(transport) -> str | None:
    """The address the TCP connection really comes from; never a header such as X-Forwarded-For."""
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    return None


def _host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def service_url_refusal(url: str | None, hosts: Iterable[str], allow_loopback: bool) -> str | None:
    """Why svcbot must not post to this serviceUrl, or None if it may."""
    if not url:
        return "no serviceUrl"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"serviceUrl {url!r} is not a URL"
    if allow_loopback and is_loopback(host) and parts.scheme in ("http", "https"):
        return None
    if parts.scheme != "https":
        return f"serviceUrl {url!r} is not https"
    if parts.username or parts.password:
        return f"serviceUrl {url!r} carries credentials"
    if not any(_host_matches(host, pattern) for pattern in hosts):
        return (f"serviceUrl host {host!r} is not a Bot Framework service host "
                "(list it in app.yaml teams.service_hosts if it is one)")
    return None


def vouched_service_url(claims: Mapping[str, object] | None, authenticated: bool, service_url: str | None) -> bool:
    """Whether the activity's token says that this serviceUrl is the channel's: the Bot Framework puts
    the serviceUrl it posts from in the token's ``serviceurl`` claim."""
    if not authenticated or not claims or not service_url:
        return False
    claim = claims.get("serviceurl")
    return isinstance(claim, str) and claim.rstrip("/") == service_url.rstrip("/")
