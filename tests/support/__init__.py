"""What the tests share besides fixtures (tests/conftest.py): paths, resource types, harnesses."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USERDATA = ROOT / "userdata"
DATA = ROOT / "tests" / "data"
