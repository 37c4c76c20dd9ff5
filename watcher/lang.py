"""Language guess, words, stop words and word stems per language (pure, fast).

Used by the story engine (`watcher.story`) to weigh evidence by word rarity, and meant for
topic matching too. Three steps, each usable alone:

- `guess(text, declared=None)`: an ISO 639-1 code. A feed's declared language wins when it
  is one we know; otherwise the script decides (Cyrillic: ru or uk by their own letters;
  Arabic, Greek, Han, kana, Hangul), and Latin text is told apart by counting stop words and
  a few letters only one language uses ("ł", "ğ", "ß"). "" when nothing is known.
- `words(text)`: lower-cased words in their own script (NFKC, case-folded, apostrophes and
  accents kept as written); Han text as overlapping character pairs, since it has no spaces.
- `stem(word, lang)`: Snowball (PyStemmer) for the 30-odd languages it has; Ukrainian,
  which Snowball lacks, through simplemma's dictionary lemmatiser (measured on real words:
  "евакуації"/"евакуацію" -> "евакуація", "мешканців"/"мешканці" -> "мешканець"; its
  low-memory dictionary, ~9 MB); any other language: the word itself.
- `terms(text, lang)`: `words` without stop words, stemmed; numbers kept as digits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache

import Stemmer

# Snowball algorithm per ISO 639-1 code (PyStemmer 3.x names).
SNOWBALL: dict[str, str] = {
    "ar": "arabic",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "et": "estonian",
    "eu": "basque",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hi": "hindi",
    "hu": "hungarian",
    "hy": "armenian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "nl": "dutch",
    "no": "norwegian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "fa": "persian",
}
LEMMATISED = frozenset({"uk"})  # simplemma (dictionary lemmas)
KNOWN = frozenset(SNOWBALL) | LEMMATISED | {"zh", "ja", "ko"}

_STOP_TEXT: dict[str, str] = {
    "en": "a about above after again against all also am amid an and any are as at be been"
    " before being below between both but by can could did do does doing down during each"
    " few for from further had has have having he her here hers him his how i if in into is"
    " it its itself just may me might more most must my new no nor not now of off on once"
    " only or other our ours out over own said same say says she should so some still such"
    " than that the their theirs them then there these they this those through to too under"
    " until up upon us very was we were what when where which while who whom why will with"
    " would yet you your told tells according report reports reported amid via",
    "de": "aber alle allem allen aller alles als also am an auch auf aus bei beim bin bis"
    " bist da damit dann das dass dem den denn der des die dies diese diesem diesen dieser"
    " doch dort du durch ein eine einem einen einer eines er es etwa für gegen hat hatte"
    " hier ihr ihre im in ist ja jetzt kann kein keine man mehr mit nach nicht noch nun nur"
    " ob oder ohne seit sich sie sind so soll sollen sowie über um und uns unter vom von vor"
    " war waren was weil wenn wer werden wie wieder will wir wird wurde wurden zu zum zur"
    " laut sagte sagt heißt",
    "fr": "a à au aux avec ce ces cette dans de des du elle en est et être il ils je la le"
    " les leur lui mais même ne ni nos notre nous on ont ou où par pas plus pour qu que qui"
    " sa sans se selon ses son sont sur ta te un une vos votre vous été après avant entre"
    " comme aussi été fait dit a",
    "es": "a al algo ante antes como con contra cual cuando de del desde donde durante e el"
    " ella ellos en entre era es esa ese eso esta este esto fue ha han hasta hay la las le"
    " les lo los más mas me mi muy ni no nos o otra otro para pero por que qué se ser si sí"
    " sin sobre son su sus también tras un una uno unos y ya dijo según",
    "it": "a ad al alla alle agli ai anche che chi con cui da dal dalla dei del della delle"
    " di e è ed gli ha hanno i il in la le lo ma mi ne nei nel nella non o per più poi se"
    " si sono su sua sue suo suoi sul sulla tra un una uno come dopo stato stata detto",
    "pt": "a ao aos as à com como da das de do dos e é em entre era foi há mais mas na nas"
    " no nos o os ou para pela pelo por que se sem ser seu sua são também um uma disse",
    "nl": "de het een en van in is op te dat die voor met zijn niet aan er als bij ook om"
    " door maar naar dan nog wel uit tot over of na zegt",
    "pl": "a aby ale bez bo był była było być czy dla do gdy i ich iż jak jako je jego jej"
    " jest już ma na nad nie niż o od oraz po pod przez przy się są ta tak także te ten to"
    " tu w we z za ze że który która które powiedział",
    "tr": "ve bir bu da de için ile mi ne o olarak olan daha çok gibi kadar ama en her şu"
    " ki sonra önce değil dedi",
    "ru": "а без более бы был была были было быть в вам во вот все всё вы где да даже для до"
    " его ее её если есть еще ещё же за и из или им их к как ко когда кто ли либо мы на над"
    " не него нее неё нет ни но о об однако он она они оно от по под после при про с со так"
    " также там то того тоже том только уже у чем что чтобы эта эти это этот я заявил"
    " заявила сообщил сообщила сказал сказала отметил отметила рассказал",
    "uk": "а але без би був була були було бути в вже від для до з за і й із їх й як який"
    " яка які на над не ні но о об от по під після при про та також те то тому у чи що щоб"
    " це ця ці цей він вона вони воно ми ви я заявив заявила повідомив повідомила сказав",
}
STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(unicodedata.normalize("NFKC", text).casefold().split())
    for lang, text in _STOP_TEXT.items()
}

_WORD = re.compile(r"[^\W_](?:[\w'’\u0300-\u036f]*[^\W_])?")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_GREEK = re.compile(r"[\u0370-\u03ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_NUMBER = re.compile(r"\d+(?:[.,\u00a0\u202f ]\d{3})*")
_UK_ONLY = set("іїєґ")
_RU_ONLY = set("ыэъё")
_LATIN_HINTS: dict[str, str] = {
    "ł": "pl",
    "ą": "pl",
    "ę": "pl",
    "ś": "pl",
    "ż": "pl",
    "ź": "pl",
    "ğ": "tr",
    "ş": "tr",
    "ı": "tr",
    "ß": "de",
    "ñ": "es",
    "ã": "pt",
    "õ": "pt",
    "ç": "fr",
}
_LATIN_LANGS = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "tr")
_STOP_OWNERS: dict[str, tuple[str, ...]] = {}
for _code in _LATIN_LANGS:
    for _word in STOPWORDS[_code]:
        _STOP_OWNERS[_word] = (*_STOP_OWNERS.get(_word, ()), _code)


# Apostrophes written inside words, as one: Ukrainian's own (U+02BC, "мʼясо") and the
# typographic one read as the ASCII one, so "мʼясо", "м’ясо" and "м'ясо" are one term.
_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'"})


def words(text: str) -> list[str]:
    """Lower-cased words in their own script; Han runs as overlapping character pairs."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    out: list[str] = []
    for word in _WORD.findall(folded):
        if _HAN.search(word):
            for run in _HAN.findall(word):
                out.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
            rest = _HAN.sub(" ", word).split()
            out.extend(rest)
        else:
            out.append(word)
    return out


def guess(text: str, declared: str | None = None) -> str:
    """ISO 639-1 code of `text`'s language ("" when unknown); a known `declared` code wins."""
    if declared:
        code = declared.strip().lower().replace("_", "-").split("-")[0]
        if code in KNOWN or code in STOPWORDS:
            return code
    sample = text[:1000]
    if _CYRILLIC.search(sample):
        low = sample.lower()
        uk = sum(ch in _UK_ONLY for ch in low)
        ru = sum(ch in _RU_ONLY for ch in low)
        return "uk" if uk > ru else "ru"
    if _KANA.search(sample):
        return "ja"
    if _HANGUL.search(sample):
        return "ko"
    if _HAN.search(sample):
        return "zh"
    if _ARABIC.search(sample):
        return "ar"
    if _GREEK.search(sample):
        return "el"
    if not _LATIN.search(sample):
        return ""
    return _guess_latin(sample)


def _guess_latin(sample: str) -> str:
    scores = dict.fromkeys(_LATIN_LANGS, 0.0)
    for token in words(sample.replace("'", " ").replace("’", " ")):
        owners = _STOP_OWNERS.get(token)
        if owners:  # a word several languages use counts for each a share
            for owner in owners:
                scores[owner] += 1 / len(owners)
    low = sample.lower()
    for char, lang in _LATIN_HINTS.items():
        if char in low:
            scores[lang] += 2
    best = max(_LATIN_LANGS, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else "en"


@cache
def _snowball(algorithm: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(algorithm)


@cache
def _uk_lemma() -> Callable[[str], str]:
    from simplemma import lemmatize  # imported on first Ukrainian word (~0.45 s to load)

    # simplemma's memory-frugal backend: the same dictionary and lemmas, read from its
    # front-coded stream (+9 MB) instead of decoded into a dict of 600,000 words (+73 MB,
    # in the daemon and in each parse worker); a word not yet in simplemma's 65,536-word
    # cache takes ~100 µs on average over tests/data's words instead of ~11 (a word the
    # dictionary lacks up to ~400 instead of ~35; measured 2026-12-03)
    def lemma(word: str) -> str:
        return lemmatize(word, lang="uk", low_memory=True).casefold()

    return lemma


@cache
def stemmer(lang: str) -> Callable[[str], str]:
    """The stem function for `lang` (identity when none is known)."""
    if lang in LEMMATISED:
        return _uk_lemma()
    algorithm = SNOWBALL.get(lang)
    if algorithm is None:
        return str
    return _snowball(algorithm).stemWord


def stem(word: str, lang: str) -> str:
    return stemmer(lang)(word)


def numbers(text: str) -> list[str]:
    """Numbers written in `text`, as digits ("1,200" and "1 200" -> "1200")."""
    return [re.sub(r"\D", "", found) for found in _NUMBER.findall(text)]


def terms(text: str, lang: str) -> list[str]:
    """Content words of `text`, stemmed for `lang`, in order (numbers as digits)."""
    stop = STOPWORDS.get(lang, frozenset())
    fn = stemmer(lang)
    out: list[str] = []
    for word in words(text):
        if word in stop:
            continue
        if word.isdigit():
            out.append(word)
        elif len(word) > 1 or not word.isascii():
            out.append(fn(word.replace("'", "")))
    return out


# Words derived from a place's name that no stem of the name reaches: what its people are
# called and the region named after it ("Kursk" -> "куряне", "Курщина"). Topic phrases that
# name the place also look for these (watcher.matching.phrase); a trailing "*" is a prefix.
# Keys are the place's names as users write them, in any script.
PLACE_WORDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("Kursk", "Курск", "Курськ"): ("курян*", "курчан*", "Курщин*", "Kurshchyn*"),
    ("Sumy", "Сумы", "Суми"): ("сумчан*", "Сумщин*", "Sumshchyn*"),
    ("Sudzha", "Суджа", "Sudscha"): ("Суджанск*", "суджан*", "Sudzhansk*"),
    ("Belgorod", "Белгород", "Бєлгород", "Bilhorod"): ("белгородц*", "бєлгородц*",
                                                       "Белгородчин*", "Белгородщин*"),
    ("Bryansk", "Брянск", "Брянськ"): ("брянц*", "брянчан*", "Брянщин*"),
    ("Kharkiv", "Kharkov", "Харьков", "Харків"): ("харьковчан*", "харків'ян*", "Харківщин*",
                                                  "Харьковщин*", "Kharkivshchyn*"),
    ("Kherson", "Херсон"): ("херсонц*", "херсонц*", "Херсонщин*", "Khersonshchyn*"),
    ("Zaporizhzhia", "Zaporozhye", "Запорожье", "Запоріжжя"): ("запорожц*", "запоріжц*",
                                                               "Запорізьк*", "Запорожск*"),
    ("Donetsk", "Донецк", "Донецьк"): ("дончан*", "Донеччин*", "Донетчин*", "Donechchyn*"),
    ("Luhansk", "Lugansk", "Луганск", "Луганськ"): ("луганчан*", "Луганщин*", "Luhanshchyn*"),
    ("Kyiv", "Kiev", "Киев", "Київ"): ("киевлян*", "киян*", "Київщин*", "Киевщин*",
                                       "Kyivshchyn*"),
    ("Odesa", "Odessa", "Одесса", "Одеса"): ("одессит*", "одесит*", "Одещин*", "Одесчин*"),
    ("Moscow", "Москва"): ("москвич*", "Подмосков*"),
}
