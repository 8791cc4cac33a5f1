"""TEMPORARY (until the settings exist): a dev-like bundle with and without the Java workload."""
from components.bundle import BundleArgs, JavaApp, render_bundle


def dev_like_files(java: bool, jmx_port: int = 9012) -> dict[str, str]:
    args = BundleArgs(env="dev", service="sample-flask-app", aws_region="us-east-2", datadog_site="datadoghq.com",
                      api_key_parameter_name="/x", agent_version="7.77.2", host_tags=("env:dev",),
                      check_interval_seconds=45, watched_processes=("gunicorn", "mysqld"), app_port=5050,
                      app_workers=2, url_lookup_allowlist=("example.com",), setup_overhead_min_ms=1,
                      setup_overhead_max_ms=2, root_volume_gib=20, bike_share=None,
                      java=JavaApp(service="cars-app", jmx_port=jmx_port, heap_max_mib=256, pool_max_active=8)
                      if java else None)
    return render_bundle(args).files
