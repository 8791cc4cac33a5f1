"""Loads the Pulumi SDKs before this layer's modules do, the way the program loads them: with the
garbage collector paused (components/__init__.py), some 3 s faster than a plain import."""

import components  # noqa: F401
