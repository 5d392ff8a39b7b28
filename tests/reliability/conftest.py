"""The small trained world of ``test_faults.py`` (trained once per test module), for the other fault modules."""

from tests.reliability.test_faults import monkeypatch_module, trained, world  # noqa: F401  (fixtures)
