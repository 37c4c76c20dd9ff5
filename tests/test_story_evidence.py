"""watcher.story.evidence: what is kept of an entry, and word rarity learned online."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from watcher.story.evidence import DocFreq, Evidence, Rarity, evidence, strip_outlet, topic_terms

AT = datetime(2025, 3, 12, 17, 0, tzinfo=UTC)


def test_evidence_reads_language_stems_names_and_numbers() -> None:
    ev = evidence("Хинштейн: военные эвакуировали из Суджи 68 россиян", "", AT)
    assert ev.lang == "ru"
    assert {"эвакуирова", "судж", "68"} <= ev.terms
    assert {"hinsh", "suj"} <= ev.names  # transliterated name keys meet Latin spellings
    assert ev.title_numbers == {"68"}


def test_a_summary_sharing_no_word_with_its_title_is_boilerplate() -> None:
    ev = evidence("Fed holds rates steady", "Read more on our website today", AT)
    assert not ev.has_lead and ev.terms == ev.title_terms


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        evidence("Fed holds rates", "", datetime(2025, 1, 1))


def test_outlet_suffix_is_cut() -> None:
    assert strip_outlet("Fed holds rates steady - BBC News") == "Fed holds rates steady"


def test_evidence_round_trips_through_json_with_its_vector() -> None:
    vec = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    vec /= np.linalg.norm(vec)
    ev = evidence(
        "Russia says Kyiv returned 46 civilians", "Moscow said on Friday.", AT, vector=vec
    )
    back = Evidence.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert back == ev
    assert back.vector is not None and np.allclose(back.vector, vec, atol=1e-3)


def test_common_words_weigh_little_and_new_names_much() -> None:
    freq = DocFreq()
    for i in range(200):
        freq.observe(evidence(f"Officials said on day {i} that prices rose", "", AT))
    rarity = Rarity(freq)
    assert rarity.weight("en", "offici") < 0.05
    assert rarity.weight("en", "khinshtein") == pytest.approx(1.0)


def test_a_topics_own_words_weigh_nothing() -> None:
    rarity = Rarity(DocFreq(), DocFreq(), ignore=topic_terms(["Covid"]))
    assert rarity.weight("en", "covid") == 0.0


def test_frequencies_forget_old_days_and_survive_a_restart() -> None:
    freq = DocFreq(keep_days=2)
    freq.observe(evidence("Old news about Sudzha", "", AT - timedelta(days=5)))
    freq.observe(evidence("New news about Sudzha", "", AT))
    back = DocFreq.from_state(json.loads(json.dumps(freq.to_state())))
    assert back.docs("en") == 2 and back.df("en", "sudzha") == 2
    back.expire(AT)
    assert back.docs("en") == 1 and back.df("en", "old") == 0 and back.df("en", "sudzha") == 1
