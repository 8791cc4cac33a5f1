"""observability-lab: a Datadog-monitored EC2 host and its Datadog objects, per stack."""

import pulumi

from components.bootstrap import AgentBootstrap
from components.dashboards import Dashboards
from components.downtimes import Downtimes
from components.host import MonitoredHost
from components.monitors import Monitors
from components.settings import load_settings

settings = load_settings()

bootstrap = AgentBootstrap("bootstrap", settings)
host = MonitoredHost("host", settings, user_data=bootstrap.user_data,
                     user_data_base64=bootstrap.user_data_base64)
dashboards = Dashboards("datadog-dashboards", settings)
monitors = Monitors("datadog-monitors", settings)
if settings.downtimes.enabled:  # e.g. dev mutes nights and weekends; prod never does
    Downtimes("datadog-downtimes", settings, monitor=monitors.my_metric)

pulumi.export("environment", settings.env)
pulumi.export("datadogHostname", settings.datadog_hostname)
pulumi.export("instanceId", host.instance_id)
pulumi.export("publicIp", host.public_ip)
pulumi.export("publicDns", host.public_dns)
pulumi.export("appUrl", host.app_url)
pulumi.export("ssmSessionCommand", host.ssm_session_command)
pulumi.export("dashboardUrls", dashboards.urls)
pulumi.export("monitorIds", monitors.ids)
