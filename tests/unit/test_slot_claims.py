"""The claim activity's answers as Temporal carries them: the workflow reads each back as the
type it was sent as, whichever answer a worker of an older version recorded."""

from __future__ import annotations

from typing import get_type_hints

import pytest
from temporalio.converter import DataConverter

from activities.records import RecordActivities
from kiln.contracts import SlotClaim, Started, Waiting

ANSWER = get_type_hints(RecordActivities.claim_slot)["return"]  # what the workflow decodes to


@pytest.mark.parametrize(
    "answer",
    [SlotClaim.STARTED, SlotClaim.WAITING, SlotClaim.FINAL, Waiting(ahead=3), Started(wake=(7, 9))],
    ids=repr,
)
def test_each_answer_comes_back_as_it_was_sent(answer: object) -> None:
    converter = DataConverter.default.payload_converter
    payloads = converter.to_payloads([answer])

    (decoded,) = converter.from_payloads(payloads, [ANSWER])

    assert decoded == answer
    assert type(decoded) is type(answer)
