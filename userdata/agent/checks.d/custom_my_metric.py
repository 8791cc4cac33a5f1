"""Datadog Agent custom check: submits gauge `my_metric`, a random integer in [min_value, max_value]."""
import random

from datadog_checks.base import AgentCheck, ConfigurationError

__version__ = "2.0.0"

# Keeps the check cheap and bounded; far above the 0..1000 we actually use.
LIMIT_MIN, LIMIT_MAX = 0, 1000000


class MyMetricCheck(AgentCheck):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        instance = self.instance
        self._min = self._bound(instance, "min_value", 0)
        self._max = self._bound(instance, "max_value", 1000)
        if self._min > self._max:
            raise ConfigurationError(
                "custom_my_metric: min_value (%r) must be <= max_value (%r)" % (self._min, self._max)
            )
        tags = instance.get("tags", [])
        # The Agent adds `service:<service>` itself, from the instance's `service` option.
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigurationError("custom_my_metric: tags must be a list of strings, got %r" % (tags,))
        self._tags = list(tags)

    @staticmethod
    def _bound(instance, option, default):
        value = instance.get(option, default)
        # Only real ints: bool is an int subclass, and coercing "5" or 5.0 would hide config typos.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError("custom_my_metric: %s must be an integer, got %r" % (option, value))
        if not LIMIT_MIN <= value <= LIMIT_MAX:
            raise ConfigurationError(
                "custom_my_metric: %s must be between %d and %d, got %r" % (option, LIMIT_MIN, LIMIT_MAX, value)
            )
        return value

    def check(self, _):
        # randint is inclusive on both ends (the old randint(1, 1001) was off by one).
        self.gauge("my_metric", random.randint(self._min, self._max), tags=self._tags)
