"""The recorded reach: named scopes as named, unnamed sides narrowed to the caller's holdings."""

from __future__ import annotations

import pytest

from proxy.audit.event import Reach
from proxy.audit.reach import forwarded_reach
from proxy.promql import Limits
from proxy.promql.analyse import analyse_query
from proxy.promql.scope import Holdings, LabelModel

MODEL = LabelModel()
CAROL = Holdings(clusters=frozenset({"prod"}), projects={"test": frozenset({"team-b"})})
DAVE = Holdings(hub_wide=True)


def reach(query: str, held: Holdings) -> Reach:
    """Reach of a query for a holder."""
    return forwarded_reach(analyse_query(query, Limits(), MODEL).selectors, held)


@pytest.mark.parametrize(
    "query,held,expected",
    [
        ("up", CAROL, Reach(clusters=("prod",), projects={"test": ("team-b",)})),
        ("up", DAVE, Reach(hub_wide=True)),
        ('up{cluster="prod"}', DAVE, Reach(clusters=("prod",))),
        ('up{cluster="prod",namespace="a"}', DAVE, Reach(projects={"prod": ("a",)})),
        ('up{cluster="test"}', CAROL, Reach(projects={"test": ("team-b",)})),
        ('up{cluster="prod",namespace=""}', CAROL, Reach(clusters=("prod",))),
        ("vector(1)", CAROL, Reach()),
        (
            'sum(up{cluster="test",exported_namespace="team-b"}) / sum(up{cluster="prod"})',
            CAROL,
            Reach(clusters=("prod",), projects={"test": ("team-b",)}),
        ),
    ],
)
def test_reach(query: str, held: Holdings, expected: Reach) -> None:
    """Each selector's reach joins the event's: hub- and cluster-wide kept as such."""
    assert reach(query, held).to_json() == expected.to_json()
