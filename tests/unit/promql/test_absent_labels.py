"""absent()/absent_over_time() narrowing must not change the labels absent() outputs.

See docs/authorization.md#rewriting-and-the-safety-net.

Prometheus' absent() copies the equality matchers of its argument selector into its output
labels, so an added `cluster="c"` would turn the answer `{}` into `{cluster="c"}`. Added matchers
there are spelled `=~"<literal>"`, which absent() does not copy; the verifier accepts exactly that.
"""

from __future__ import annotations

import pytest

from proxy.promql import (
    Holdings,
    LabelModel,
    Limits,
    VerificationFailed,
    analyse_query,
    enforce_query,
)
from proxy.promql.policy import Held
from proxy.promql.verify import verify_query

MODEL = LabelModel()
LIMITS = Limits()
BOB = Holdings(clusters=frozenset({"nerc-ocp-test"}))


def run(query: str, holdings: Holdings) -> str:
    """Analyse and enforce one query in narrow mode."""
    return enforce_query(analyse_query(query, LIMITS, MODEL), holdings, "narrow")


def test_absent_narrowing_changes_output_labels() -> None:
    """A single-cluster holder's absent(m) gets cluster=~"c", never the copied cluster="c"."""
    assert run("absent(nonexistent_metric)", BOB) == 'absent(nonexistent_metric{cluster=~"nerc-ocp-test"})'


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("absent_over_time(m[5m])", 'absent_over_time(m{cluster=~"nerc-ocp-test"}[5m])'),
        ("absent_over_time(m[5m] offset 1m)", 'absent_over_time(m{cluster=~"nerc-ocp-test"}[5m] offset 1m)'),
        ('absent((m{job="x"}))', 'absent((m{job="x",cluster=~"nerc-ocp-test"}))'),
        # not a copy position: the inner selector keeps the plain equality form
        ("absent(rate(m[5m]))", 'absent(rate(m{cluster="nerc-ocp-test"}[5m]))'),
        ("absent(m) + m", 'absent(m{cluster=~"nerc-ocp-test"}) + m{cluster="nerc-ocp-test"}'),
        # the identical equality matcher is already present: nothing is added (labels kept)
        ('absent(m{cluster="nerc-ocp-test"})', 'absent(m{cluster="nerc-ocp-test"})'),
    ],
)
def test_absent_narrowing_changes_output_labels_in_every_copy_position(query: str, expected: str) -> None:
    """Only the selector absent()/absent_over_time() copies from gets the regex spelling."""
    assert run(query, BOB) == expected


def test_absent_narrowing_changes_output_labels_dotted_names_are_escaped() -> None:
    """A held name with a dot is an escaped literal, read back by the verifier as {name}."""
    h = Holdings(clusters=frozenset({"ocp.prod"}))
    assert run("absent(m)", h) == 'absent(m{cluster=~"ocp\\\\.prod"})'


def test_absent_narrowing_changes_output_labels_keeps_present_equalities() -> None:
    """absent(m{cluster="c1",namespace="a"}) for the holder of c1/a is forwarded unchanged."""
    h = Holdings(projects={"c1": frozenset({"a"})})
    q = 'absent(m{cluster="c1",namespace="a"})'
    assert run(q, h) == q


def test_absent_narrowing_changes_output_labels_verifier_refuses_equality() -> None:
    """The verifier refuses an added equality matcher where absent() would copy it."""
    tree = analyse_query("absent(m)", LIMITS, MODEL).trees[0]
    held = Held.of(BOB)
    verify_query(tree, 'absent(m{cluster=~"nerc-ocp-test"})', held, MODEL, LIMITS)
    with pytest.raises(VerificationFailed):
        verify_query(tree, 'absent(m{cluster="nerc-ocp-test"})', held, MODEL, LIMITS)
    over = analyse_query("absent_over_time((m[5m]))", LIMITS, MODEL).trees[0]
    with pytest.raises(VerificationFailed):
        verify_query(over, 'absent_over_time((m{cluster="nerc-ocp-test"}[5m]))', held, MODEL, LIMITS)
    with pytest.raises(VerificationFailed):
        verify_query(tree, 'absent(m{cluster=~"nerc-ocp-test|other"})', held, MODEL, LIMITS)
