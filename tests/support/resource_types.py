"""The resource and component types the tests look for: declared once here."""

INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
LIFECYCLE_POLICY = "aws:dlm/lifecyclePolicy:LifecyclePolicy"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
PARAMETER = "aws:ssm/parameter:Parameter"
KMS_KEY = "aws:kms/key:Key"
DOCUMENT = "aws:ssm/document:Document"
ASSOCIATION = "aws:ssm/association:Association"
MONITOR = "datadog:index/monitor:Monitor"
DASHBOARD = "datadog:index/dashboard:Dashboard"
DOWNTIME = "datadog:index/downtimeSchedule:DowntimeSchedule"
SLO = "datadog:index/serviceLevelObjective:ServiceLevelObjective"
ANCHOR = "time:index/static:Static"

# The program's components: observability-lab:<module>:<Class> (components/base.py).
ACCESS = "observability-lab:host:HostAccess"
HOST = "observability-lab:host:MonitoredHost"
SNAPSHOTS = "observability-lab:snapshots:DataSnapshots"
CONFIGURATION = "observability-lab:configuration:HostConfiguration"
CONVERGE = "observability-lab:configuration:ConvergeAssociation"
MONITORS = "observability-lab:monitors:Monitors"
DASHBOARDS = "observability-lab:dashboards:Dashboards"
DOWNTIMES = "observability-lab:downtimes:Downtimes"
BIKE_SHARE = "observability-lab:bikeShare:BikeShareMonitoring"
SLOS = "observability-lab:slos:ServiceLevelObjectives"
# Tokens of before (kept as aliases): the one-host component, then the "aws" module.
SINGLE_HOST_BEFORE = "observability-lab:aws:MonitoredHost"
ACCESS_BEFORE = "observability-lab:aws:HostAccess"
# (token, name) now -> (token, name) before issue 22's one scheme: the same component, aliased.
COMPONENTS_RETYPED = {(new, name): (old, name) for new, old, name in (
    (CONFIGURATION, "observability-lab:host:HostConfiguration", "host-config"),
    (CONVERGE, "observability-lab:host:ConvergeAssociation", "host-config-run"),
    (MONITORS, "observability-lab:datadog:Monitors", "datadog-monitors"),
    (DASHBOARDS, "observability-lab:datadog:Dashboards", "datadog-dashboards"),
    (DOWNTIMES, "observability-lab:datadog:Downtimes", "datadog-downtimes"),
    (BIKE_SHARE, "observability-lab:datadog:BikeShareMonitoring", "bike-share"))}
