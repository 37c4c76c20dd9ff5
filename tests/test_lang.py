"""watcher.lang: language guess, words, stop words and stems per language."""

from __future__ import annotations

import pytest

from watcher import lang


@pytest.mark.parametrize(
    ("text", "declared", "expected"),
    [
        ("Russia says Kyiv returned 46 civilians taken to Ukraine after incursion", None, "en"),
        ("В Россию вернулись 46 мирных жителей Курской области", None, "ru"),
        ("Москалькова: з Курщини евакуювали мешканців, які перебували на Сумщині", None, "uk"),
        ("Fünf Surfer vor niederländischer Küste ums Leben gekommen", None, "de"),
        ("Hombre de Birmingham arrestado en relación con el homicidio", None, "es"),
        ("L'uomo ha sparato durante un tentativo di rapina, è stato arrestato", None, "it"),
        ("1 personne sur 3 aux États-Unis sous verrouillage alors que les cas montent", None, "fr"),
        ("Wernisaż wystawy plakatów w Gdańsku", None, "pl"),
        ("新冠疫苗接种工作在全国展开", None, "zh"),
        ("Headline in any words", "de-AT", "de"),  # a feed's declared language wins
        ("Headline in any words", "xx", "en"),  # ... when it is one we know
        ("12345", None, ""),
    ],
)
def test_guess(text: str, declared: str | None, expected: str) -> None:
    assert lang.guess(text, declared) == expected


@pytest.mark.parametrize(
    ("forms", "code"),
    [
        (["evacuated", "evacuation", "evacuations"], "en"),
        (["эвакуации", "эвакуация", "эвакуацию"], "ru"),
        (["евакуації", "евакуацію", "евакуація"], "uk"),
        (["мешканців", "мешканці", "мешканець"], "uk"),
        (["Flüchtlinge", "Flüchtling"], "de"),
        (["résidents", "résident"], "fr"),
    ],
)
def test_word_forms_share_a_stem(forms: list[str], code: str) -> None:
    assert len({lang.stem(w.casefold(), code) for w in forms}) == 1


def test_terms_drop_stop_words_and_keep_numbers() -> None:
    assert lang.terms("The Fed said it holds rates at 5 percent", "en") == [
        "fed",
        "hold",
        "rate",
        "5",
        "percent",
    ]
    assert "сообщил" not in " ".join(lang.terms("Как сообщил губернатор, 46 жителей", "ru"))


def test_han_text_becomes_character_pairs() -> None:
    assert lang.words("疫苗接种") == ["疫苗", "苗接", "接种"]


def test_numbers_fold_separators() -> None:
    assert lang.numbers("over 2,000 residents and 1 200 more") == ["2000", "1200"]


def test_unknown_language_keeps_words() -> None:
    assert lang.terms("Sawubona bantu", "zu") == ["sawubona", "bantu"]


def test_ukrainian_lemmas_do_not_hold_the_whole_dictionary_in_memory() -> None:
    """Ukrainian stems come from simplemma's dictionary read in place: loading it costs the
    process a few MB, not the ~70 MB of the dictionary decoded (every daemon with a
    Ukrainian topic phrase, and each parse worker, loads it)."""
    import subprocess
    import sys

    probe = (
        "import resource\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()\n"
        "from watcher import lang\n"
        "import simplemma\n"
        "before = rss()\n"
        "print(lang.stem('мешканців', 'uk'), lang.stem('евакуації', 'uk'))\n"
        "print((rss() - before) // 2**20)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == "мешканець евакуація"
    assert int(out[1]) < 35  # MB; 70+ with the dictionary decoded into a dict


def test_ukrainian_apostrophes_are_one_term() -> None:
    """The modifier letter apostrophe (U+02BC, Ukrainian's standard one), the typographic
    one and the ASCII one: outlets write "м'ясо" all three ways, the story engine must see
    one word."""
    assert (lang.terms("мʼясо та мʼясник", "uk") == lang.terms("м’ясо та м’ясник", "uk")
            == lang.terms("м'ясо та м'ясник", "uk"))
