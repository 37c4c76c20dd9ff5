"""Normalisation: the forms matching and dedupe compare."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.html import html_to_text
from watcher.matching.text import (
    fold_variants,
    match_form,
    match_words,
    normalise,
    tokenize,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ｋｕｒｓｋ ﬁle №5", "kursk file no5"),  # NFKC: full-width letters, ligatures
        ("KURSK Evacuation", "kursk evacuation"),  # case folding
        ("Straße", "strasse"),
        ("Gümüş café Ñandú", "gumus cafe nandu"),  # accents folded
        ("e\u0301vacuation", "evacuation"),  # a combining accent
        ("Kursk's residents — evacuated…!", "kursks residents evacuated"),  # punctuation
        ("  Kursk\t\n region  ", "kursk region"),  # whitespace collapsed
        ("<p>Kursk &amp; <b>Sumy</b></p>", "kursk sumy"),  # HTML removed
        ("Курской области", "kurskoy oblasti"),  # Cyrillic transliterated
        ("Курськ, Сумщина", "kursk sumshchina"),  # Ukrainian soft sign and apostrophe
        ("Об'єднання", "obiednannya"),
        ("Семёнов", "semenov"),  # ё written as е
        ("北京 ½", "beijing 1 2"),  # any script
        ("", ""),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    "spellings",
    [
        ("Khinshtein", "Hinshtein", "Хинштейн", "Khinshteyn"),  # kh/h, y/i
        ("Zelenskyy", "Zelensky", "Zelenskiy", "Зеленский"),  # y/i, ii/i
        ("Sudzha", "Sudja", "Суджа"),  # dzh/dj/j
        ("Tatyana", "Tatiana", "Татьяна"),  # ya/ia
        ("Shchekino", "Schekino", "Щекино"),  # shch/sch
        ("Alexander", "Aleksander"),  # x/ks
        ("Kyiv", "Київ"),
        ("Sumy", "Сумы", "Суми", "Sumi"),
    ],
)
def test_transliteration_variants_fold_together(spellings: tuple[str, ...]) -> None:
    assert len({match_form(spelling) for spelling in spellings}) == 1


@pytest.mark.parametrize("text", [
    "Курської області — «евакуація» №5 €3", "北京市 Zürich", "ქართული ენა", "العربية",
    "עברית ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "देवनागरी ﷺ", "Ελληνικά Ὀδυσσεύς", "ｶﾀｶﾅ ひらがな", "Семён",
])
def test_every_script_is_converted_as_if_the_whole_table_were_precomputed(text: str) -> None:
    """The table is precomputed only for Latin, Greek, Cyrillic and punctuation (start-up
    cost); any other character is converted when first met, to the same result."""
    from anyascii import anyascii as convert

    from watcher.matching import text as module

    full = [module._table_entry(chr(code)) for code in range(0x10000)]
    full[ord("ё")] = "e"
    reference = text.translate(full)
    if not reference.isascii():
        reference = convert(unicodedata.normalize("NFKC", reference))
    assert normalise(text) == " ".join("".join(
        char.lower() if char.isalnum() else " " for char in reference.replace("'", "")).split())


def test_fold_variants_works_on_normalised_text() -> None:
    assert fold_variants(normalise("Хинштейн Zelenskyy")) == "hinshtein zelenski"


def test_html_to_text_drops_scripts_and_decodes_entities() -> None:
    markup = "<script>var kursk = 1;</script><p>Red&nbsp;Cross &amp; ICRC</p><style>p{}</style>"
    assert html_to_text(markup) == "Red Cross & ICRC"


@pytest.mark.parametrize(
    "text",
    [
        "«Курской» области: Kursk's <b>evacuation</b>",
        "ICRC&nbsp;helps; 33 residents return",
        "Кур'ськ — Sumy’s",
    ],
)
def test_tokens_point_into_the_original_text(text: str) -> None:
    tokens = tokenize(text)
    assert [token.word for token in tokens] == match_words(text)
    for token in tokens:
        assert match_form(text[token.start : token.end]) == token.word


@given(st.text())
def test_normalise_never_fails_and_yields_plain_words(text: str) -> None:
    result = normalise(text)
    assert result == " ".join(result.split())
    for word in result.split():
        assert word.isascii() and word.isalnum() and word == word.lower()
    assert normalise(result) == result


@given(st.text())
def test_match_forms_agree_and_tokens_stay_in_range(text: str) -> None:
    assert match_form(text) == " ".join(match_words(text))
    previous = (0, 0)
    for token in tokenize(text):
        assert 0 <= token.start < token.end <= len(text)
        # in order; words split from one original word share its span
        assert token.start >= previous[1] or (token.start, token.end) == previous
        previous = (token.start, token.end)


_LETTERS = "abcdefghijklmnopqrstuvwxyzабвгдеёжзийклмнопрстуфхцчшщъыьэюяієїґ"


@given(st.text(alphabet=_LETTERS + " ,.-'", max_size=60))
def test_normalise_ignores_case(text: str) -> None:
    assert normalise(text.upper()) == normalise(text) == normalise(text.title())
