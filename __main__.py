"""observability-lab: a Datadog-monitored EC2 host and its Datadog objects, per stack."""

import pulumi

from components.settings import load_settings

settings = load_settings()

pulumi.export("environment", settings.env)
pulumi.export("datadogHostname", settings.datadog_hostname)
