"""The bike_share Agent check against GBFS 1.x/2.3/3.0 feeds served over HTTPS on 127.0.0.1.

The check runs through datadog_checks.base (its real `self.http`, TLS verification included) and
the stub aggregator. Documents are written here with the spec's field names; nothing leaves loopback.
"""
import copy
import http.server
import json
import re
import ssl
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from datadog_checks.base import AgentCheck, ConfigurationError
from datadog_checks.base.stubs import aggregator

from tests.support import ROOT
from tests.support.agent_checks import load_check_module

bike_share = load_check_module("bike_share")
METRICS_PAGE = ROOT / "docs" / "datadog.md"  # the metric table: the check's metadata.csv

NOW = 1_760_000_000  # the check's wall clock in every test
TAGS = ["team:relocation", "city:nyc"]  # no generic tags: the stub's rule stays on
SYSTEM = "system:citi_bike_test"
HANG = "hang"  # route marker: answer only when the test ends (client timeout)


# --------------------------------------------------------------------------- documents
# (station_id, name, capacity, bikes, bikes_disabled, docks, docks_disabled, installed, renting, returning)
STATIONS = [
    ("66db237e-0aca-11e7-82f6-3863bb44ef7c", "W 52 St & 11 Ave", 55, 10, 2, 40, 3, True, True, True),
    ("72", "Franklin St & W Broadway", 33, 0, 1, 31, 1, True, True, True),  # empty
    ("82", "St James Pl & Pearl St", 27, 27, 0, 0, 0, True, True, False),  # full, not returning
    ("83", "Atlantic Ave & Fort Greene Pl", 62, 30, 0, 30, 2, True, False, True),  # not renting
    ("116", "W 17 St & 8 Ave", 50, 0, 0, 0, 0, False, False, False),  # not installed: not in totals
]
FEEDS = ["system_information", "station_information", "station_status"]


def gbfs23(base, languages=("en", "fr"), feeds=FEEDS, ttl=300):
    return {"last_updated": NOW - 20, "ttl": ttl, "version": "2.3", "data": {
        lang: {"feeds": [{"name": n, "url": f"{base}/{lang}/{n}.json"} for n in ["gbfs_versions", *feeds]]}
        for lang in languages}}


def system_information23(ttl=300):
    return {"last_updated": NOW - 20, "ttl": ttl, "version": "2.3", "data": {
        "system_id": "citi_bike_test", "language": "en", "name": "Citi Bike", "timezone": "America/New_York",
        "operator": "Lyft", "url": "https://citibikenyc.com"}}


def station_information23(ttl=60, prefix=""):
    return {"last_updated": NOW - 20, "ttl": ttl, "version": "2.3", "data": {"stations": [
        {"station_id": sid, "name": prefix + name, "short_name": f"{6000 + i}.0{i}", "lat": 40.76 - i / 100,
         "lon": -73.99 + i / 100, "region_id": "71", "capacity": capacity, "rental_methods": ["KEY", "CREDITCARD"],
         "station_type": "classic", "has_kiosk": True, "eightd_has_key_dispenser": False}
        for i, (sid, name, capacity, *_) in enumerate(STATIONS)]}}


def station_status23(ttl=10):
    return {"last_updated": NOW - 7, "ttl": ttl, "version": "2.3", "data": {"stations": [
        {"station_id": sid, "num_bikes_available": bikes, "num_ebikes_available": bikes // 2,
         "num_bikes_disabled": bikes_off, "num_docks_available": docks, "num_docks_disabled": docks_off,
         "is_installed": installed, "is_renting": renting, "is_returning": returning,
         "last_reported": NOW - 30 - i, "eightd_has_available_keys": False,
         "vehicle_types_available": [{"vehicle_type_id": "1", "count": bikes - bikes // 2},
                                     {"vehicle_type_id": "2", "count": bikes // 2}]}
        for i, (sid, _, _, bikes, bikes_off, docks, docks_off, installed, renting, returning) in enumerate(STATIONS)]}}


def rfc3339(posix):  # 3.0 timestamps, with a non-UTC offset to prove offsets are honoured
    return datetime.fromtimestamp(posix, timezone(timedelta(hours=-4))).isoformat()


def localized(en, fr):
    return [{"text": en, "language": "en"}, {"text": fr, "language": "fr"}]


def gbfs30(base):
    return {"last_updated": rfc3339(NOW - 20), "ttl": 0, "version": "3.0", "data": {"feeds": [
        {"name": n, "url": f"{base}/v3/{n}.json"} for n in ["gbfs", "manifest", *FEEDS, "vehicle_types"]]}}


def system_information30():
    return {"last_updated": rfc3339(NOW - 20), "ttl": 0, "version": "3.0", "data": {
        "system_id": "citi_bike_test", "languages": ["en", "fr"], "name": localized("Citi Bike", "Vélo Citi"),
        "opening_hours": "24/7", "feed_contact_email": "gbfs@example.com", "timezone": "America/New_York"}}


def station_information30():
    return {"last_updated": rfc3339(NOW - 20), "ttl": 0, "version": "3.0", "data": {"stations": [
        {"station_id": "72", "name": localized("Franklin St & W Broadway", "Rue Franklin et W Broadway"),
         "lat": 40.71, "lon": -74.0, "capacity": 33},
        {"station_id": "82", "name": localized("St James Pl & Pearl St", "Place St-Jacques"),
         "lat": 40.71, "lon": -74.0, "capacity": 27}]}}


def station_status30():
    return {"last_updated": rfc3339(NOW - 7), "ttl": 0, "version": "3.0", "data": {"stations": [
        {"station_id": "72", "num_vehicles_available": 5, "num_vehicles_disabled": 1, "num_docks_available": 27,
         "num_docks_disabled": 0, "is_installed": True, "is_renting": True, "is_returning": True,
         "last_reported": rfc3339(NOW - 45), "vehicle_types_available": [{"vehicle_type_id": "1", "count": 5}]},
        {"station_id": "82", "num_vehicles_available": 0, "num_docks_available": 27, "is_installed": True,
         "is_renting": True, "is_returning": True, "last_reported": rfc3339(NOW - 5)}]}}


# --------------------------------------------------------------------------- HTTPS server
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        route = server.routes.get(self.path, (404, b"Not Found"))
        if route == HANG:
            server.release.wait(10)
            route = (200, b"{}")
        status, body, *headers = (200, json.dumps(route).encode()) if isinstance(route, dict) else route
        try:
            self.send_response(status)
            for name, value in (headers[0] if headers else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up mid-handshake is expected in the timeout test


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.routes, srv.requests, srv.release = {}, [], threading.Event()
    srv.base, srv.ca_cert = f"https://127.0.0.1:{srv.server_address[1]}", str(cert)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def feed(https_server):
    """A GBFS 2.3 system (en and fr feeds) on the server; tests edit `feed.routes` to break it."""
    srv, base = https_server, https_server.base
    srv.requests.clear()
    srv.release.clear()
    srv.routes = {"/gbfs.json": gbfs23(base), "/en/gbfs_versions.json": (200, b"{}")}
    for lang, prefix in (("en", ""), ("fr", "Station ")):
        srv.routes.update({f"/{lang}/system_information.json": system_information23(),
                           f"/{lang}/station_information.json": station_information23(prefix=prefix),
                           f"/{lang}/station_status.json": station_status23()})
    yield srv
    srv.release.set()  # let a hung handler finish


pytestmark = pytest.mark.usefixtures("aggregator")  # emptied around every test


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # loopback only, whatever the machine's proxy


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_check(feed, clock=None, **options):
    instance = {"gbfs_url": feed.base + "/gbfs.json", "tls_ca_cert": feed.ca_cert, "tags": TAGS, "timeout": 5}
    instance.update(options)
    instance = {k: v for k, v in instance.items() if v is not None}
    check = bike_share.BikeShareCheck("bike_share", {}, [instance])
    check.wall_time = lambda: NOW
    check.monotonic = clock or Clock()
    return check


def station_tags(station_id, name):
    return [SYSTEM, f"station_id:{station_id}", f"station_name:{name}", *TAGS]


def values(metric):
    """{station_id or 'system': value} of one metric's submissions."""
    out = {}
    for m in aggregator.metrics(metric):
        sid = next((t.split(":", 1)[1] for t in m.tags if t.startswith("station_id:")), "system")
        assert sid not in out, f"{metric} submitted twice for {sid}"
        out[sid] = m.value
    return out


def assert_ok():
    aggregator.assert_service_check("bikeshare.can_fetch", AgentCheck.OK, tags=TAGS, count=1)


def assert_critical(reason):
    (sc,) = aggregator.service_checks("bikeshare.can_fetch")
    assert sc.status == AgentCheck.CRITICAL and sorted(sc.tags) == sorted(TAGS)
    assert re.search(reason, sc.message), sc.message
    assert aggregator.metric_names == [], "a broken snapshot must submit nothing"


def documented_metadata():
    """docs/datadog.md's metric table, in the shape of integrations-core's metadata.csv."""
    rows = re.findall(r"^\| `(bikeshare\.[a-z_.]+)` \| (\w+) \| (\w*) ?\| (.+) \|$", METRICS_PAGE.read_text(), re.M)
    return {name: {"metric_type": mtype, "unit_name": unit, "description": desc}
            for name, mtype, unit, desc in rows}


# --------------------------------------------------------------------------- metrics and tags
def test_gbfs23_station_metrics_tags_and_system_totals(feed):
    uuid = STATIONS[0][0]
    make_check(feed, station_ids=[uuid, "82"]).check(None)

    wide = station_tags(uuid, "w_52_st_11_ave")
    expected = {"bikes_available": 10, "docks_available": 40, "bikes_disabled": 2, "docks_disabled": 3,
                "capacity": 55, "fill_ratio": 0.2, "is_renting": 1, "is_returning": 1, "seconds_since_report": 30}
    for metric, value in expected.items():
        aggregator.assert_metric("bikeshare.station." + metric, value, tags=wide, count=1,
                                 metric_type=aggregator.GAUGE)
    full = station_tags("82", "st_james_pl_pearl_st")
    for metric, value in {"bikes_available": 27, "docks_available": 0, "fill_ratio": 1.0, "is_returning": 0,
                          "seconds_since_report": 32}.items():
        aggregator.assert_metric("bikeshare.station." + metric, value, tags=full, count=1)

    # Totals count every installed station of the system (station 116 is not installed).
    totals = {"bikes_available": 67, "docks_available": 101, "stations_empty": 1, "stations_full": 1,
              "stations_reporting": 4, "feed_age_seconds": 7, "stations_missing": 0}
    for metric, value in totals.items():
        aggregator.assert_metric("bikeshare.system." + metric, value, tags=[SYSTEM, *TAGS], count=1)
    assert_ok()
    aggregator.assert_all_metrics_covered()
    aggregator.assert_metrics_using_metadata(documented_metadata(), check_submission_type=True,
                                             check_symmetric_inclusion=True)


def test_readme_table_lists_gauges_with_units_and_descriptions():
    table = documented_metadata()
    assert len(table) == 16
    assert {row["metric_type"] for row in table.values()} == {"gauge"}
    # Datadog unit names; the 0/1 flags have none, as in integrations-core's metadata.csv files.
    assert {row["unit_name"] for row in table.values()} == {"item", "fraction", "second", ""}
    assert all(len(row["description"]) > 20 for row in table.values())


@pytest.mark.parametrize("name, tag", [
    ("W 52 St & 11 Ave", "w_52_st_11_ave"),
    ("  Central Park S & 6 Ave ", "central_park_s_6_ave"),
    ("Café de l'Opéra (Nord)", "café_de_l_opéra_nord"),
    ("Pier 40 - Hudson River Park", "pier_40_-_hudson_river_park"),
    ("8 Ave / W 31 St", "8_ave_/_w_31_st"),
    ("x" * 300, "x" * 100),
])
def test_station_names_become_lowercase_datadog_safe_tags(name, tag):
    assert bike_share.tag_value(name) == tag


def test_gbfs2_language_picks_the_feeds(feed):
    make_check(feed, station_ids=["72"], language="fr").check(None)

    aggregator.assert_metric("bikeshare.station.bikes_available", 0,
                             tags=station_tags("72", "station_franklin_st_w_broadway"))
    assert all(p.startswith(("/gbfs.json", "/fr/")) for p in feed.requests), feed.requests


def test_gbfs2_without_language_reads_the_first_listed(feed):
    make_check(feed, station_ids=["72"]).check(None)

    assert [p for p in feed.requests if p != "/gbfs.json"] == [
        "/en/system_information.json", "/en/station_information.json", "/en/station_status.json"]


def test_gbfs2_unknown_language_is_critical(feed):
    make_check(feed, station_ids=["72"], language="de").check(None)

    assert_critical(r"gbfs.json has no 'de' feeds \(it has: en, fr\)")


def test_gbfs30_flat_feeds_rfc3339_vehicle_names_and_localized_names(feed):
    base = feed.base
    feed.routes.update({"/gbfs.json": gbfs30(base), "/v3/system_information.json": system_information30(),
                        "/v3/station_information.json": station_information30(),
                        "/v3/station_status.json": station_status30()})
    make_check(feed, largest_stations=2).check(None)

    first = station_tags("72", "franklin_st_w_broadway")  # no language: the first text of each name
    for metric, value in {"bikes_available": 5, "bikes_disabled": 1, "docks_available": 27, "capacity": 33,
                          "fill_ratio": 5 / 32, "seconds_since_report": 45}.items():
        aggregator.assert_metric("bikeshare.station." + metric, value, tags=first, count=1)
    aggregator.assert_metric("bikeshare.system.feed_age_seconds", 7, count=1)
    aggregator.assert_metric("bikeshare.system.stations_empty", 1, count=1)
    assert_ok()

    aggregator.reset()
    make_check(feed, largest_stations=2, language="fr").check(None)
    aggregator.assert_metric("bikeshare.station.bikes_available", 0, tags=station_tags("82", "place_st-jacques"))


def test_gbfs1_integer_booleans(feed):
    status = station_status23()
    for station in status["data"]["stations"]:
        for key in ("is_installed", "is_renting", "is_returning"):
            station[key] = int(station[key])
    feed.routes["/en/station_status.json"] = status
    make_check(feed, station_ids=["83", "82"]).check(None)

    assert values("bikeshare.station.is_renting") == {"83": 0, "82": 1}
    assert values("bikeshare.station.is_returning") == {"83": 1, "82": 0}
    aggregator.assert_metric("bikeshare.system.stations_reporting", 4)
    assert_ok()


def test_stations_missing_optional_fields_submit_what_is_known(feed):
    info, status = station_information23(), station_status23()
    del info["data"]["stations"][1]["capacity"]
    for key in ("num_docks_available", "num_bikes_disabled", "num_docks_disabled"):
        del status["data"]["stations"][1][key]
    feed.routes.update({"/en/station_information.json": info, "/en/station_status.json": status})
    make_check(feed, station_ids=["72"]).check(None)

    assert {m for m in aggregator.metric_names if m.startswith("bikeshare.station.")} == {
        "bikeshare.station.bikes_available", "bikeshare.station.is_renting", "bikeshare.station.is_returning",
        "bikeshare.station.seconds_since_report"}
    aggregator.assert_metric("bikeshare.system.docks_available", 70)  # 101 without its 31
    aggregator.assert_metric("bikeshare.system.stations_full", 1)  # unknown docks is not "full"
    assert_ok()


# --------------------------------------------------------------------------- selection and its bound
def test_largest_stations_by_capacity(feed):
    make_check(feed, largest_stations=2).check(None)

    assert set(values("bikeshare.station.capacity")) == {"83", STATIONS[0][0]}  # 62 and 55 docks
    aggregator.reset()
    make_check(feed, largest_stations=50).check(None)  # more than the system has: all of them
    assert set(values("bikeshare.station.capacity")) == {s[0] for s in STATIONS}
    aggregator.assert_metric("bikeshare.system.stations_missing", 0)


def test_unknown_station_ids_are_reported_not_fatal(feed):
    check = make_check(feed, station_ids=["72", "no-such-station"])
    check.check(None)

    assert set(values("bikeshare.station.bikes_available")) == {"72"}
    aggregator.assert_metric("bikeshare.system.stations_missing", 1)
    assert any("no-such-station" in w for w in check.warnings)
    assert_ok()


def test_station_disappearing_between_runs(feed):
    check = make_check(feed, station_ids=["72", "82"])
    check.check(None)
    assert set(values("bikeshare.station.bikes_available")) == {"72", "82"}

    aggregator.reset()
    status = station_status23()
    status["data"]["stations"] = [s for s in status["data"]["stations"] if s["station_id"] != "82"]
    feed.routes["/en/station_status.json"] = status
    check.check(None)

    assert set(values("bikeshare.station.bikes_available")) == {"72"}
    aggregator.assert_metric("bikeshare.system.stations_missing", 1)
    aggregator.assert_metric("bikeshare.system.bikes_available", 40)  # 67 without station 82's 27
    assert any("82" in w for w in check.warnings)
    assert_ok()


@pytest.mark.parametrize("options, message", [
    ({}, r"set exactly one of station_ids or largest_stations \(1-50\)"),
    ({"station_ids": ["72"], "largest_stations": 3}, "set exactly one of"),
    ({"largest_stations": 0}, r"largest_stations must be an integer from 1 to 50, got 0"),
    ({"largest_stations": 51}, "got 51"),
    ({"largest_stations": True}, "largest_stations"),
    ({"largest_stations": "10"}, "largest_stations"),
    ({"station_ids": []}, r"station_ids must be a list of 1 to 50 distinct station ids, got \[\]"),
    ({"station_ids": [str(i) for i in range(51)]}, "station_ids"),
    ({"station_ids": ["72", "72"]}, "station_ids"),
    ({"station_ids": ["72", ""]}, "station_ids"),
    ({"station_ids": [True]}, "station_ids"),
    ({"station_ids": "72"}, "station_ids"),
    ({"largest_stations": 5, "gbfs_url": "http://gbfs.citibikenyc.com/gbfs.json"}, "gbfs_url must be an https"),
    ({"largest_stations": 5, "gbfs_url": None}, "gbfs_url"),
    ({"largest_stations": 5, "language": ""}, "language"),
    ({"largest_stations": 5, "tags": "env:dev"}, "tags must be a list of strings"),
    ({"largest_stations": 5, "timeout": 0}, r"timeout must be a number of seconds in \(0, 60\]"),
    ({"largest_stations": 5, "timeout": 61}, "timeout"),
])
def test_bad_configuration_is_refused_with_the_option_named(feed, options, message):
    with pytest.raises(ConfigurationError, match=message) as refused:
        make_check(feed, **options)
    assert str(refused.value).startswith("bike_share: ")


def test_service_option_is_left_to_the_agent(feed):
    # The Agent adds service:<value> from the instance option; the check must not add it too
    # (the stub aggregator rejects a generic `service:` tag from a check).
    make_check(feed, station_ids=["72"], service="bike-relocation").check(None)

    tags = {t for name in aggregator.metric_names for m in aggregator.metrics(name) for t in m.tags}
    assert tags and not any(t.startswith("service:") for t in tags)
    assert_ok()


def test_station_ids_may_be_yaml_integers(feed):
    make_check(feed, station_ids=[72, 82]).check(None)

    assert set(values("bikeshare.station.bikes_available")) == {"72", "82"}


# --------------------------------------------------------------------------- cache
def test_station_information_is_cached_for_its_ttl(feed):
    clock = Clock()
    check = make_check(feed, clock, largest_stations=3)  # gbfs.json/system ttl 300 s, stations 60 s
    runs = {}
    for at in (0, 30, 59, 61, 301):
        feed.requests.clear()
        clock.now = 1000.0 + at
        check.check(None)
        runs[at] = [p.rsplit("/", 1)[1] for p in feed.requests]

    assert runs == {
        0: ["gbfs.json", "system_information.json", "station_information.json", "station_status.json"],
        30: ["station_status.json"],
        59: ["station_status.json"],
        61: ["station_information.json", "station_status.json"],
        301: ["gbfs.json", "system_information.json", "station_information.json", "station_status.json"],
    }
    aggregator.assert_service_check("bikeshare.can_fetch", AgentCheck.OK, count=5)


def test_ttl_zero_fetches_every_run(feed):
    feed.routes["/en/station_information.json"] = station_information23(ttl=0)
    check = make_check(feed, station_ids=["72"])
    check.check(None)
    feed.requests.clear()
    check.check(None)

    assert "/en/station_information.json" in feed.requests


# --------------------------------------------------------------------------- bad feeds
def _drop(doc, station_index, key):
    doc = copy.deepcopy(doc)
    del doc["data"]["stations"][station_index][key]
    return doc


@pytest.mark.parametrize("path, route, reason", [
    ("/gbfs.json", (404, b"Not Found"), r"^gbfs.json: HTTP 404 from https://127\.0\.0\.1:\d+/gbfs.json$"),
    ("/en/station_status.json", (500, b"oops"), r"^station_status: HTTP 500 from "),
    ("/en/station_status.json", HANG, r"^station_status: timed out fetching "),
    ("/en/station_status.json", (200, b'{"data": {"stations": ['), r"^station_status: invalid JSON from "),
    ("/en/station_information.json", (200, b"<html>maintenance</html>"), "station_information: invalid JSON"),
    ("/en/system_information.json", (200, b"[]"), "system_information: not a GBFS document"),
    ("/gbfs.json", "no station_status", r"^gbfs.json lists no station_status feed$"),
    ("/gbfs.json", "http feed", r"^station_status is not at an https:// URL: http://"),
    ("/en/station_status.json", "no stations", "^station_status has no stations list$"),
    ("/en/station_status.json", "no bikes", r"^station_status: station 82: missing num_bikes_available$"),
    ("/en/station_status.json", "bad bool", r"station 72: is_renting must be a boolean, got 'yes'"),
    ("/en/station_status.json", "bad time", r"station 72 last_reported: not a POSIX or RFC 3339 time: 'yesterday'"),
    ("/en/station_status.json", "naive time", r"not a POSIX or RFC 3339 time: '2025-10-09T08:00:00'"),
    ("/en/station_status.json", "negative", r"num_docks_available must be a non-negative integer, got -1"),
    ("/en/station_information.json", "no name", r"^station_information: station 72 has no name$"),
    ("/en/system_information.json", "no system_id", "^system_information has no system_id$"),
])
def test_bad_feed_is_critical_with_its_reason_and_submits_nothing(feed, path, route, reason):
    base, status = feed.base, station_status23()
    edits = {
        "no station_status": lambda: gbfs23(base, feeds=FEEDS[:2]),
        "http feed": lambda: json.loads(json.dumps(gbfs23(base)).replace(
            base + "/en/station_status", "http://127.0.0.1:9/en/station_status")),
        "no stations": lambda: {**status, "data": {}},
        "no bikes": lambda: _drop(status, 2, "num_bikes_available"),
        "bad bool": lambda: _set(status, 1, "is_renting", "yes"),
        "bad time": lambda: _set(status, 1, "last_reported", "yesterday"),
        "naive time": lambda: _set(status, 1, "last_reported", "2025-10-09T08:00:00"),
        "negative": lambda: _set(status, 1, "num_docks_available", -1),
        "no name": lambda: _drop(station_information23(), 1, "name"),
        "no system_id": lambda: {**system_information23(), "data": {"name": "Citi Bike"}},
    }
    feed.routes[path] = edits[route]() if route in edits else route
    check = make_check(feed, station_ids=["72"], timeout=0.3)
    check.check(None)

    assert_critical(reason)
    assert check.warnings and re.search(reason.lstrip("^"), check.warnings[-1].split("bike_share: ", 1)[1])


def _set(doc, station_index, key, value):
    doc = copy.deepcopy(doc)
    doc["data"]["stations"][station_index][key] = value
    return doc


@pytest.fixture
def plain_http():
    """A plain-HTTP server on loopback serving a valid station_status: what a downgrade reaches."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.requests, srv.release = {"/station_status.json": station_status23()}, [], threading.Event()
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _redirect(location, status=302):
    return status, b"", {"Location": location}


def test_redirects_to_https_are_followed(feed):
    feed.routes["/en/station_status.json"] = _redirect("/moved/station_status.json", 301)
    feed.routes["/moved/station_status.json"] = _redirect(feed.base + "/final/station_status.json", 307)
    feed.routes["/final/station_status.json"] = station_status23()
    make_check(feed, station_ids=["72"]).check(None)

    assert_ok()
    assert feed.requests[-3:] == ["/en/station_status.json", "/moved/station_status.json",
                                  "/final/station_status.json"]


def test_a_redirect_to_plain_http_is_not_followed(feed, plain_http):
    downgrade = f"http://127.0.0.1:{plain_http.server_address[1]}/station_status.json"
    feed.routes["/en/station_status.json"] = _redirect(downgrade)
    make_check(feed, station_ids=["72"]).check(None)

    assert_critical(r"^station_status is not at an https:// URL: http://127\.0\.0\.1:\d+/station_status\.json$")
    assert plain_http.requests == []


def test_a_redirect_loop_ends_at_the_bound(feed):
    feed.routes["/en/station_status.json"] = _redirect("/en/station_status.json")
    make_check(feed, station_ids=["72"]).check(None)

    assert_critical(r"^station_status: more than 5 redirects, last to https://")
    assert feed.requests.count("/en/station_status.json") == 6


def test_a_document_over_the_size_bound_is_refused_even_after_a_redirect(feed, monkeypatch):
    monkeypatch.setattr(bike_share, "MAX_DOCUMENT_BYTES", 4096)
    big = station_information23()
    big["data"]["padding"] = "x" * 8192
    feed.routes["/en/station_information.json"] = _redirect("/big/station_information.json")
    feed.routes["/big/station_information.json"] = big
    make_check(feed, station_ids=["72"]).check(None)

    assert_critical(r"^station_information: more than 4096 bytes from https://.*/big/station_information\.json$")


def test_tls_is_verified(feed):
    make_check(feed, station_ids=["72"], tls_ca_cert=None).check(None)  # self-signed, not trusted

    assert_critical(r"^gbfs.json: cannot fetch https://127\.0\.0\.1:\d+/gbfs.json: SSLError$")


def test_failure_after_success_submits_nothing_then_recovers_by_rediscovering(feed):
    check = make_check(feed, station_ids=["72"])
    check.check(None)
    assert_ok()

    aggregator.reset()
    good = feed.routes["/en/station_status.json"]
    feed.routes["/en/station_status.json"] = (503, b"busy")
    check.check(None)
    assert_critical("HTTP 503")

    aggregator.reset()
    feed.routes["/en/station_status.json"] = good
    feed.requests.clear()
    check.check(None)
    assert_ok()
    assert feed.requests[0] == "/gbfs.json"  # cached documents were dropped with the failure


# --------------------------------------------------------------------------- the stack's conf
def test_the_conf_each_stack_renders_is_a_valid_instance(feed, rendered_bundle):
    for stack, overrides in (("dev", None), ("prod", {"bikeShareEnabled": True, "bikeShareStationIds": ["72", "82"]})):
        files = rendered_bundle(stack, overrides)
        conf = yaml.safe_load(files["agent/conf.d/bike_share.yaml"])
        (instance,) = conf["instances"]
        bike_share.BikeShareCheck("bike_share", conf["init_config"], [instance])  # validates
        local = {**instance, "gbfs_url": feed.base + "/gbfs.json", "tls_ca_cert": feed.ca_cert, "tags": TAGS}
        check = bike_share.BikeShareCheck("bike_share", conf["init_config"], [local])
        check.wall_time = lambda: NOW
        aggregator.reset()
        check.check(None)
        watched = {"dev": len(STATIONS), "prod": 2}[stack]
        assert len(values("bikeshare.station.bikes_available")) == watched, stack
        assert_ok()


def test_version():
    assert bike_share.__version__ == "1.0.0"
