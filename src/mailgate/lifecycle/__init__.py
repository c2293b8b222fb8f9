"""Grant lifecycle (issue 23): what needs an administrator's attention, per account, and the keep-alive that
prevents the commonest problem (a refresh token dying of inactivity).

- :class:`ProblemWatch`: the :data:`~mailgate.problems.ProblemSource` of every account (``services.problems``).
- :class:`KeepAlive`: refreshes idle grants in the background (``services.keepalive``).
- :func:`account_problems` / :class:`AccountFacts`: the rules, pure.
"""

from .keepalive import KeepAlive
from .rules import DELIVERY_FAILING_AFTER, AccountFacts, account_links, account_problems
from .watch import ProblemWatch

__all__ = ["DELIVERY_FAILING_AFTER", "AccountFacts", "KeepAlive", "ProblemWatch", "account_links", "account_problems"]
