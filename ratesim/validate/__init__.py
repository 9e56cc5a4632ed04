"""``ratesim.validate``: checking a policy against a suite of assertions (issue 12 item 3).

Only the assertion language exists so far (:mod:`ratesim.validate.assertions`); the suite
loader, runner, report and CLI are not written yet.
"""

from .assertions import Assertion, AssertionSyntaxError, check, parse_assertion

__all__ = ["Assertion", "AssertionSyntaxError", "check", "parse_assertion"]
