"""What a valid setting value is, and the one error that lists every bad setting of a run.

Settings are parsed from the raw config strings (settings/declare.py), not with
`Config.get_int` & co., because those raise on the first bad value; here every value is
checked and every problem is reported together in one `SettingsError`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Optional, Sequence
from urllib.parse import urlsplit

# Every pattern is matched against the whole value (fullmatch): `re.match` with `$` also
# accepts a trailing newline, which would end a line of app.env or datadog.yaml early.
# Datadog tag rules: start with a letter, lowercase letters, digits and
# `_ - : . /`, at most 200 characters; we also require `key:value`.
_TAG = re.compile(r"[a-z][a-z0-9_.\-/]*:[a-z0-9_.\-/:]+")
# A notification handle: `@` then an email, a Slack/PagerDuty/team handle, ...
_LABEL = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?")
_HANDLE = re.compile(r"@[A-Za-z0-9_.+\-@/]+")
# An IAM role or user, as aws:PrincipalArn names it (a role's path included, never a session).
_IAM_PRINCIPAL = re.compile(r"arn:aws(-cn|-us-gov)?:iam::\d{12}:(role|user)/([\w+=,.@\-]+/)*[\w+=,.@\-]{1,64}")


class SettingsError(ValueError):
    """Every invalid stack setting of one run, one per line."""

    def __init__(self, stack: str, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} invalid setting(s) in stack '{stack}' "
            f"(Pulumi.{stack}.yaml); nothing was created:\n{lines}"
        )


def is_datadog_tag(tag: str) -> bool:
    return len(tag) <= 200 and bool(_TAG.fullmatch(tag))


def is_handle(handle: str) -> bool:
    return bool(_HANDLE.fullmatch(handle))


def is_iam_principal_arn(arn: str) -> bool:
    return bool(_IAM_PRINCIPAL.fullmatch(arn))


def is_hostname(name: str) -> bool:
    """A DNS name (not an IP literal): the app's URL allowlist holds only names."""
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or labels[-1].isdigit():
        return False
    return all(_LABEL.fullmatch(label) for label in labels)


def is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return False
    return True


def is_whole_internet(cidr: str) -> bool:
    return ipaddress.ip_network(cidr).prefixlen == 0


def non_public_address(url: str) -> Optional[str]:
    """Why the URL's host is refused, when it is a literal address outside public unicast space.

    Names pass (what they resolve to is the network's business), but for `localhost` and the
    names under it: RFC 6761 reserves them for loopback, so they are the host itself as surely
    as 127.0.0.1 is. Literals are read as the resolver reads them: inet_aton's forms too
    (`127.1`, `0x7f.0.0.1`, `2130706433`), and an IPv6 address is also judged by the IPv4
    address it embeds (mapped, NAT64, 6to4, Teredo).
    """
    host = (urlsplit(url).hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is a name reserved for loopback (RFC 6761)"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if address in ipaddress.ip_network("64:ff9b::/96"):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
        candidates += [a for a in embedded if a is not None]
    for candidate in [*candidates, address]:
        if not candidate.is_global or candidate.is_multicast:
            return f"{candidate} is a literal address outside public unicast space"
    return None
