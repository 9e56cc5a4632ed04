"""``ratesim.validate``: sign a policy off against a suite of scenarios (issue 12 item 3).

``ratesim.validate(policy, suite=None) -> Report`` (this module is callable: it is
:func:`~ratesim.validate.run.validate`; ``ratesim.validate.validate`` is the same function for
typed code). ``policy``: a :class:`~ratesim.policy.PolicySpec`, an importer's ``Imported``, a
scenario, or a path (a ratesim policy or scenario YAML, or a gateway config, ``kind=`` to name
its importer); ``suite``: a YAML path, a dict, or ``None`` for the standard suite
(``standard.yaml`` beside this file). The pieces:

* :mod:`.suite` - the suite format, loaded and bounded, errors at ``file:line: field``;
* :mod:`.rules` / :mod:`.assertions` - the assertion forms and the confidence-bound rule;
* :mod:`.inputs` - the policy under test and each scenario it is dropped into;
* :mod:`.metrics` - the metrics a suite adds to the sweep's standard ones;
* :mod:`.run` - the runner (sweeps with common random numbers, the ``--redis`` parity replay);
* :mod:`.report` - :class:`Report` (``passed``, ``table``, ``write(dir)``);
* :mod:`.cli` - ``ratesim validate``. See docs/guides/validate.md.
"""

import sys
import types
from typing import Any

from .assertions import Assertion, AssertionSyntaxError, check, parse_assertion
from .report import Report
from .rules import RuleSyntaxError, parse_rule
from .run import RedisUnreachable, run_suite, validate
from .suite import STANDARD_SUITE, Suite, SuiteError, load_suite

__all__ = [
    "STANDARD_SUITE",
    "Assertion",
    "AssertionSyntaxError",
    "RedisUnreachable",
    "Report",
    "RuleSyntaxError",
    "Suite",
    "SuiteError",
    "check",
    "load_suite",
    "parse_assertion",
    "parse_rule",
    "run_suite",
    "validate",
]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`validate` (``ratesim.validate(policy, suite)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return validate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
