"""observability-lab: a Datadog-monitored EC2 host and its Datadog objects, per stack."""

import pulumi

from components.bike_share import BikeShareArgs, BikeShareMonitoring
from components.bootstrap import AgentBootstrap
from components.bundle import render_bundle
from components.converge import ConvergeAssociation, HostConfiguration
from components.dashboards import Dashboards
from components.downtimes import Downtimes
from components.host import MonitoredHost
from components.datadog_common import app_base_url
from components.monitors import Monitors, audience
from components.settings import load_settings

settings = load_settings()

# One rendering of userdata/, run by two triggers: the first boot, and the SSM
# association after every change. Only the image and the subnet replace the host.
configuration = HostConfiguration(
    "host-config", render_bundle(settings), name_prefix=settings.name("host-config"),
    parameter_name=settings.config_parameter_name,
    description=f"observability-lab {settings.env}: unpack a configuration bundle and converge the host on it",
    tags={"Name": settings.name("host-config"), **settings.aws_tags})
bootstrap = AgentBootstrap("bootstrap", settings.config_parameter_name)
host = MonitoredHost("host", settings, user_data=bootstrap.user_data,
                     config_parameter=configuration.parameter,
                     config_document_prefix=settings.name("host-config"))
converge = ConvergeAssociation("host-config-run", configuration, target_tag=settings.fleet_tag,
                               after=[host.instance])
dashboards = Dashboards("datadog-dashboards", settings)
monitors = Monitors("datadog-monitors", settings)
if settings.downtimes.enabled:  # e.g. dev mutes nights and weekends; prod never does
    Downtimes("datadog-downtimes", settings, monitor=monitors.my_metric)
monitor_ids, dashboard_urls = dict(monitors.ids), dict(dashboards.urls)
if settings.bike_share.enabled:  # the seed's closing use case; dev on, prod off by default
    bike = settings.bike_share
    bike_share = BikeShareMonitoring(
        "bike-share",
        BikeShareArgs(scope=f"host:{settings.datadog_hostname}", host_default=settings.datadog_hostname,
                      empty_below_bikes=bike.empty_below_bikes, full_below_docks=bike.full_below_docks,
                      window_minutes=bike.window_minutes, stale_after_minutes=bike.stale_after_minutes,
                      feed_url=bike.feed_url),
        audience(settings, handles=bike.notification_handles),
        dashboard_url_base=app_base_url(settings.datadog_site))
    monitor_ids.update(bike_share.ids)
    dashboard_urls["bikeShare"] = bike_share.url

pulumi.export("environment", settings.env)
pulumi.export("datadogHostname", settings.datadog_hostname)
pulumi.export("instanceId", host.instance_id)
pulumi.export("publicIp", host.public_ip)
pulumi.export("publicDns", host.public_dns)
pulumi.export("appUrl", host.app_url)
pulumi.export("ssmSessionCommand", host.ssm_session_command)
pulumi.export("configDocument", configuration.document.name)
pulumi.export("convergeAssociationId", converge.association_id)
pulumi.export("dashboardUrls", dashboard_urls)
pulumi.export("monitorIds", monitor_ids)
