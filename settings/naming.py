"""The one naming and tagging object: every name, tag and title of a stack's resources comes from here.

Built once from the settings (`Settings.naming`) and handed to every component, so a name
is spelled one way everywhere: AWS names start with `<project>-<env>`, SSM paths with
`/<project>/<env>/`, Datadog objects carry `[<env>]` in their title and the standard tags,
and the Agent adds the stack's host tags that its Datadog objects select its hosts by.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Naming:
    project: str
    env: str
    service: str       # the app's Datadog service
    hosts: int         # hostCount: hosts 1..hosts

    @property
    def prefix(self) -> str:
        """What every environment-scoped AWS name starts with, so dev and prod never collide."""
        return f"{self.project}-{self.env}"

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def ssm_path(self, suffix: str) -> str:
        return f"/{self.project}/{self.env}/{suffix}"

    @property
    def aws_tags(self) -> dict[str, str]:
        """Tags carried by every AWS resource this program owns."""
        return {"env": self.env, "service": self.service, "managed-by": "pulumi", "project": self.project}

    def tagged(self, role: str) -> dict[str, str]:
        """The AWS tags of a resource whose Name is `name(role)`."""
        return {"Name": self.name(role), **self.aws_tags}

    def datadog_tags(self, service: str | None = None) -> tuple[str, ...]:
        """Tags carried by every Datadog object this program owns (of the app's service unless told)."""
        return (f"env:{self.env}", f"service:{service or self.service}", "managed-by:pulumi")

    @property
    def trace_scope(self) -> str:
        """The tag filter of this stack's traces of the app: APM tags them with its service and env."""
        return f"service:{self.service},env:{self.env}"

    @property
    def change_events(self) -> str:
        """The event search finding the change events converge.sh sends from this stack's hosts
        (tagged `source:observability-lab` and the stack's env), overlaid on the dashboards."""
        return f"source:{self.project} env:{self.env}"

    def title(self, text: str) -> str:
        """A Datadog object's name or title: the environment first."""
        return f"[{self.env}] {text}"

    @property
    def stack_host_tags(self) -> tuple[str, ...]:
        """Host tags the Agent adds on every host of the stack: what scopes its Datadog objects to
        its own hosts (another project's hosts in the same env never match)."""
        return (f"env:{self.env}", f"project:{self.project}")

    def datadog_hostname(self, index: int) -> str:
        """Host `index`'s name in Datadog (1-based), known before its instance exists."""
        return f"{self.prefix}-{index}"

    @property
    def datadog_hostnames(self) -> tuple[str, ...]:
        return tuple(self.datadog_hostname(n) for n in range(1, self.hosts + 1))

    @property
    def fleet_tag(self) -> tuple[str, str]:
        """The EC2 tag that marks this stack's hosts, for people and tools. Nothing trusts it:
        anyone may tag an instance, so the SSM association names the instances by id."""
        return ("fleet", self.prefix)

    @property
    def data_volume_tag(self) -> tuple[str, str]:
        """The tag of the stack's data volumes: what its snapshot policy targets."""
        return ("data-volume", self.prefix)

    @property
    def data_snapshot_tag(self) -> tuple[str, str]:
        """The tag the snapshot policy adds to each snapshot it makes: the only ones it may delete."""
        return ("data-snapshot", self.prefix)

    def data_volume_tags(self, index: int) -> dict[str, str]:
        """Host `index`'s data volume: tagged like its host, and as one of the stack's data volumes."""
        key, value = self.data_volume_tag
        return {**self.tagged(f"host-{index}-data"), key: value}

    @property
    def api_key_parameter(self) -> str:
        """SSM path of the Datadog API key; the Agent resolves it at boot."""
        return self.ssm_path("datadog/api_key")

    @property
    def api_key_kms_alias(self) -> str:
        """The alias of the stack's own KMS key that encrypts the API key parameter."""
        return f"alias/{self.prefix}-datadog-api-key"

    @property
    def config_documents(self) -> str:
        """What the names of the hosts' configuration documents start with (the hosts may read those only)."""
        return self.name("host-config")

    @property
    def config_parameter(self) -> str:
        """SSM path naming the document with the hosts' current configuration bundle."""
        return self.ssm_path("host-config/document")
