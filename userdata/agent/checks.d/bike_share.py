"""Agent check `bike_share`: bike-share station occupancy from a GBFS feed (1.x-3.0). A run validates
the whole snapshot before it submits; a bad part only sends `bikeshare.can_fetch` CRITICAL."""
import json
import re
import time
from datetime import datetime
from urllib.parse import urljoin

from requests.exceptions import RequestException, Timeout

from datadog_checks.base import AgentCheck, ConfigurationError

__version__ = "1.0.0"

MAX_STATIONS = 50  # each watched station is a custom-metric context per station metric
# A feed document is read whole into memory: the largest systems' station_information is a few MB.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_REDIRECTS = 5  # each one followed only to another https:// URL
FEEDS = ("system_information", "station_information", "station_status")
NOT_TAG_SAFE = re.compile(r"[^\w.\-/]+")


class FeedError(Exception):
    """No whole snapshot this run; the message is the service check's reason."""


class BikeShareCheck(AgentCheck):
    __NAMESPACE__ = "bikeshare"

    def __init__(self, name, init_config, instances):
        super().__init__(name, init_config, instances)
        inst = self.instance or {}
        self._url = _option(inst, "gbfs_url", None, lambda v: isinstance(v, str) and v.startswith("https://"),
                            "an https:// URL of the system's gbfs.json")
        self._language = _option(inst, "language", None, lambda v: v is None or isinstance(v, str) and v,
                                 "a language code such as 'en'")
        self._tags = _option(inst, "tags", [], lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
                             "a list of strings")
        _option(inst, "timeout", 10, lambda v: _number(v) and 0 < v <= 60, "a number of seconds in (0, 60]")
        ids, self._largest = inst.get("station_ids"), inst.get("largest_stations")
        if (ids is None) == (self._largest is None):
            raise ConfigurationError(
                f"bike_share: set exactly one of station_ids or largest_stations (1-{MAX_STATIONS})")
        if ids is None:
            _option(inst, "largest_stations", None, lambda v: _integer(v) and 1 <= v <= MAX_STATIONS,
                    f"an integer from 1 to {MAX_STATIONS}")
        else:  # YAML reads bare numeric ids as integers
            _option(inst, "station_ids", None, lambda v: isinstance(v, list) and 1 <= len(v) <= MAX_STATIONS
                    and all(_integer(i) or isinstance(i, str) and i for i in v) and len(set(map(str, v))) == len(v),
                    f"a list of 1 to {MAX_STATIONS} distinct station ids")
        self._station_ids = ids and [str(i) for i in ids]
        self._cache = {}  # url -> (monotonic expiry, document)
        self.monotonic, self.wall_time = time.monotonic, time.time  # attributes: tests drive the clocks

    def check(self, _):
        try:
            system_id, stations, totals = self._snapshot()
        except FeedError as e:
            self._cache.clear()  # rediscover everything next run
            self.warning("bike_share: %s", e)
            self.service_check("can_fetch", self.CRITICAL, tags=self._tags, message=str(e))
            return
        system_tags = ["system:" + tag_value(system_id), *self._tags]
        for station_id, name, values in stations:
            tags = [*system_tags, "station_id:" + station_id, "station_name:" + (tag_value(name) or station_id)]
            for metric, value in values.items():
                self.gauge("station." + metric, value, tags=tags)
        for metric, value in totals.items():
            self.gauge("system." + metric, value, tags=system_tags)
        self.service_check("can_fetch", self.OK, tags=self._tags)

    def _snapshot(self):
        urls = feed_urls(self._get("gbfs.json", self._url, True), self._language)
        system, info, status = (self._get(f, urls[f], f != "station_status") for f in FEEDS)
        system_id = system["data"].get("system_id")
        if not isinstance(system_id, str) or not system_id:
            raise FeedError("system_information has no system_id")
        names, capacities = station_information(info, self._language)
        readings = station_status(status)
        now = self.wall_time()
        age = now - _timestamp(status.get("last_updated"), "station_status last_updated")
        selected = self._station_ids or sorted(capacities, key=lambda s: (-capacities[s], s))[: self._largest]
        missing = [s for s in selected if s not in readings or s not in names]
        if missing:
            self.warning("bike_share: selected stations not in the feed: %s", ", ".join(missing))
        stations = [(s, names[s], station_values(readings[s], capacities.get(s), now))
                    for s in selected if s not in missing]
        installed = [r for r in readings.values() if r["is_installed"]]
        totals = {
            "bikes_available": sum(r["bikes_available"] for r in installed),
            "docks_available": sum(r["docks_available"] or 0 for r in installed),
            "stations_empty": sum(r["bikes_available"] == 0 for r in installed),
            "stations_full": sum(r["docks_available"] == 0 for r in installed),
            "stations_reporting": len(installed),
            "feed_age_seconds": max(0.0, age),
            "stations_missing": len(missing),
        }
        return system_id, stations, totals

    def _get(self, what, url, cached):
        entry = self._cache.get(url)
        if cached and entry and self.monotonic() < entry[0]:
            return entry[1]
        document = self._fetch(what, url)
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise FeedError(f"{what}: not a GBFS document (no data object)")
        ttl = document.get("ttl", 0)
        if not _integer(ttl) or ttl < 0:
            raise FeedError(f"{what}: ttl must be a non-negative integer, got {ttl!r}")
        self._cache[url] = (self.monotonic() + ttl, document)
        return document

    def _fetch(self, what, url):
        """The JSON at url, following at most MAX_REDIRECTS redirects, each to https only, and
        reading at most MAX_DOCUMENT_BYTES (requests itself would follow any scheme, any size)."""
        for _ in range(MAX_REDIRECTS + 1):
            if not url.startswith("https://"):
                raise FeedError(f"{what} is not at an https:// URL: {url}")
            try:
                response = self.http.get(url, allow_redirects=False, stream=True)
                try:
                    status, location = response.status_code, response.is_redirect and response.headers["Location"]
                    body = _read_at_most(response, MAX_DOCUMENT_BYTES) if 200 <= status < 300 else b""
                finally:
                    response.close()
            except Timeout:
                raise FeedError(f"{what}: timed out fetching {url}")
            except RequestException as e:
                raise FeedError(f"{what}: cannot fetch {url}: {type(e).__name__}")
            if location:
                url = urljoin(url, location)
                continue
            if not 200 <= status < 300:
                raise FeedError(f"{what}: HTTP {status} from {url}")
            if body is None:
                raise FeedError(f"{what}: more than {MAX_DOCUMENT_BYTES} bytes from {url}")
            try:
                return json.loads(body)
            except ValueError:
                raise FeedError(f"{what}: invalid JSON from {url}")
        raise FeedError(f"{what}: more than {MAX_REDIRECTS} redirects, last to {url}")


def _read_at_most(response, limit):
    """The body, or None if it is longer than limit (stops reading there)."""
    body = bytearray()
    for chunk in response.iter_content(chunk_size=64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _option(inst, key, default, valid, allowed):
    value = inst.get(key, default)
    if not valid(value):
        raise ConfigurationError(f"bike_share: {key} must be {allowed}, got {value!r}")
    return value


def tag_value(text):
    return NOT_TAG_SAFE.sub("_", text.lower()).strip("_")[:100]


def feed_urls(gbfs, language):
    # 3.0 lists data.feeds; 1.x/2.x list them under a language key (configured, else the first).
    data = gbfs["data"]
    feeds = data.get("feeds")
    if feeds is None and data:
        key = language or next(iter(data))
        if key not in data:
            raise FeedError(f"gbfs.json has no '{key}' feeds (it has: {', '.join(data)})")
        feeds = data[key].get("feeds") if isinstance(data[key], dict) else None
    if not isinstance(feeds, list):
        raise FeedError("gbfs.json lists no feeds")
    urls = {f.get("name"): f.get("url") for f in feeds if isinstance(f, dict) and isinstance(f.get("url"), str)}
    for name in FEEDS:
        if name not in urls:
            raise FeedError(f"gbfs.json lists no {name} feed")
    return urls


def _stations(document, what):
    stations = document["data"].get("stations")
    if not isinstance(stations, list):
        raise FeedError(f"{what} has no stations list")
    for station in stations:
        station_id = station.get("station_id") if isinstance(station, dict) else None
        if not (_integer(station_id) or isinstance(station_id, str) and station_id):
            raise FeedError(f"{what}: a station has no station_id")
        yield str(station_id), station


def station_information(document, language):
    names, capacities = {}, {}
    for station_id, station in _stations(document, "station_information"):
        name = station.get("name")
        if isinstance(name, list):  # 3.0: [{"text", "language"}]: the configured language, else the first
            texts = [n for n in name if isinstance(n, dict) and isinstance(n.get("text"), str)]
            texts = [n for n in texts if n.get("language") == language] or texts
            name = texts[0]["text"] if texts else None
        if not isinstance(name, str):
            raise FeedError(f"station_information: station {station_id} has no name")
        names[station_id] = name
        capacity = _count(station, ("capacity",), "station_information: station " + station_id, optional=True)
        if capacity is not None:
            capacities[station_id] = capacity
    return names, capacities


def station_status(document):
    readings = {}
    for station_id, s in _stations(document, "station_status"):
        what = "station_status: station " + station_id
        readings[station_id] = {
            "bikes_available": _count(s, ("num_vehicles_available", "num_bikes_available"), what),
            "docks_available": _count(s, ("num_docks_available",), what, optional=True),
            "bikes_disabled": _count(s, ("num_vehicles_disabled", "num_bikes_disabled"), what, optional=True),
            "docks_disabled": _count(s, ("num_docks_disabled",), what, optional=True),
            "is_installed": _flag(s, "is_installed", what),
            "is_renting": _flag(s, "is_renting", what),
            "is_returning": _flag(s, "is_returning", what),
            "last_reported": _timestamp(s.get("last_reported"), what + " last_reported"),
        }
    return readings


def _count(station, keys, what, optional=False):
    key = next((k for k in keys if k in station), None)
    if key is None:
        if optional:
            return None
        raise FeedError(f"{what}: missing {keys[-1]}")
    if not _integer(station[key]) or station[key] < 0:
        raise FeedError(f"{what}: {key} must be a non-negative integer, got {station[key]!r}")
    return station[key]


def _flag(station, key, what):
    if station.get(key) not in (True, False):  # 1.x publishes 1/0, equal to True/False
        raise FeedError(f"{what}: {key} must be a boolean, got {station.get(key)!r}")
    return int(station[key])


def _timestamp(value, what):
    # POSIX seconds (1.x/2.x) or RFC 3339 with an offset (3.0)
    if _number(value):
        return float(value)
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise FeedError(f"{what}: not a POSIX or RFC 3339 time: {value!r}")
    return parsed.timestamp()


def station_values(reading, capacity, now):
    values = {k: v for k, v in reading.items() if v is not None and k not in ("is_installed", "last_reported")}
    values["seconds_since_report"] = max(0.0, now - reading["last_reported"])
    if capacity is not None:
        values["capacity"] = capacity
    docks = reading["docks_available"]
    if docks is not None and reading["bikes_available"] + docks:
        values["fill_ratio"] = reading["bikes_available"] / (reading["bikes_available"] + docks)
    return values
