"""Shared by the Agent check tests: load a checks.d file the way the Agent does."""
import importlib.util
import os

AGENT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "userdata", "agent")


def load_check_module(name):
    """Import checks.d/<name>.py from its file (no package needed, as in the Agent)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(AGENT_DIR, "checks.d", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
