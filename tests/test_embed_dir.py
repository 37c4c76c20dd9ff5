"""watcher.embed: a local model directory (sentence-transformers' ONNX export), for servers
that cannot download the bundled model. Each test builds a real tiny model: a WordLevel
tokenizer.json and an ONNX graph (an embedding table looked up by token id)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from watcher.cli import main
from watcher.embed import Embedder, EmbedderUnavailable, load_embedder

SENTENCES = [
    "residents of kursk region are evacuated from their homes",
    "kursk residents return home after the evacuation",
    "bitcoin exchange files for bankruptcy in tokyo",
    "the central bank holds interest rates steady",
]
VOCAB = ["[PAD]", "[UNK]", *dict.fromkeys(w for s in SENTENCES for w in s.split())]
DIM = 64  # wide enough that random rows of different words are near orthogonal
TABLE = np.random.default_rng(7).normal(size=(len(VOCAB), DIM)).astype(np.float32)


def _tokenizer(path: Path) -> None:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))


def _graph(path: Path, output: str = "tokens", *, token_types: bool = True) -> None:
    """token_embeddings (batch, tokens, DIM); "sentence": their sum over the attention mask
    (batch, DIM), as sentence-transformers' pooled export; "rank1": a (batch,) output."""
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if token_types else [])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"])
              for n in names]
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["token_embeddings"])]
    inits = [numpy_helper.from_array(TABLE, "table")]
    shape: list[str | int] = ["batch", "tokens", DIM]
    if output != "tokens":
        inits.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "two"))
        inits.append(numpy_helper.from_array(np.array([1, 2] if output == "rank1" else [1],
                                                      dtype=np.int64), "axes"))
        nodes += [helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
                  helper.make_node("Unsqueeze", ["mask", "two"], ["mask3"]),
                  helper.make_node("Mul", ["token_embeddings", "mask3"], ["masked"]),
                  helper.make_node("ReduceSum", ["masked", "axes"], [output], keepdims=0)]
        shape = ["batch"] if output == "rank1" else ["batch", DIM]
    graph = helper.make_graph(nodes, "tiny", inputs,
                              [helper.make_tensor_value_info(nodes[-1].output[0],
                                                             TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """The layout of a plain ONNX export: model.onnx and tokenizer.json at the top."""
    directory = tmp_path / "tiny-model"
    directory.mkdir()
    _graph(directory / "model.onnx")
    _tokenizer(directory / "tokenizer.json")
    return directory


def _one_line_error(spec: str) -> str:
    with pytest.raises(EmbedderUnavailable) as caught:
        load_embedder(spec)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_model_directory_loads_and_gives_unit_rows(model_dir: Path) -> None:
    model = load_embedder(str(model_dir))
    assert isinstance(model, Embedder)
    assert model.dim == DIM
    vectors = model.embed(SENTENCES[:3])
    assert vectors.dtype == np.float32 and vectors.shape == (3, DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.embed([]).shape == (0, DIM)
    # mean of the token rows: what sentence-transformers' mean pooling gives
    ids = [VOCAB.index(w) for w in SENTENCES[0].split()]
    expected = TABLE[ids].mean(axis=0)
    assert np.allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-5)


def test_padding_does_not_change_a_texts_vector(model_dir: Path) -> None:
    model = load_embedder(str(model_dir))
    short = "bitcoin exchange"
    alone = model.embed([short])[0]
    batched = model.embed([SENTENCES[0], short])[1]  # padded to the longer text
    assert np.allclose(alone, batched, atol=1e-5)


def test_texts_sharing_words_are_closer_than_unrelated_ones(model_dir: Path) -> None:
    model = load_embedder(str(model_dir))
    evac, back, bank = model.embed(["kursk residents evacuated", "kursk residents return home",
                                    "central bank holds rates"])
    assert float(evac @ back) > float(evac @ bank) + 0.3


def test_the_name_tells_models_apart(model_dir: Path) -> None:
    name = load_embedder(str(model_dir)).name
    assert name.startswith("dir:tiny-model:") and len(name) > len("dir:tiny-model:")
    assert load_embedder(str(model_dir)).name == name  # stable across loads
    stat = (model_dir / "model.onnx").stat()
    os.utime(model_dir / "model.onnx", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_embedder(str(model_dir)).name != name  # the model file was replaced


def test_cached_phrase_vectors_are_made_again_when_the_directory_changes(
        model_dir: Path, tmp_path: Path) -> None:
    """The phrase cache keys a directory's vectors by every file that shapes them: a new
    truncation or tokenizer (same model.onnx, same name) makes them again."""
    from watcher.phrase_vectors import PhraseCache

    path = tmp_path / "phrase-vectors.npz"
    phrase = SENTENCES[2]

    def cached_vector() -> np.ndarray:
        model = load_embedder(str(model_dir))
        cache = PhraseCache(model, path)
        vector = cache.embed([phrase])[0]
        cache.close()
        assert np.allclose(vector, model.embed([phrase])[0], atol=1e-5)  # never stale
        return vector

    full = cached_vector()
    name = load_embedder(str(model_dir)).name
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 3}))
    assert load_embedder(str(model_dir)).name == name
    assert not np.allclose(cached_vector(), full, atol=1e-3)


def test_the_onnx_subdirectory_layout_with_a_pooled_output(model_dir: Path) -> None:
    """sentence-transformers' ONNX backend: onnx/model.onnx, here with a 2-D
    sentence_embedding output and no token_type_ids input (it must not be fed)."""
    pooled = model_dir.parent / "pooled"
    _graph(pooled / "onnx" / "model.onnx", "sentence", token_types=False)
    _tokenizer(pooled / "tokenizer.json")
    model = load_embedder(str(pooled))
    assert model.dim == DIM
    texts = [SENTENCES[0], "bitcoin exchange"]
    assert np.allclose(model.embed(texts), load_embedder(str(model_dir)).embed(texts), atol=1e-5)


def test_texts_are_cut_at_the_configured_max_seq_length(model_dir: Path) -> None:
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 3}))
    model = load_embedder(str(model_dir))
    long, cut = model.embed([SENTENCES[2], " ".join(SENTENCES[2].split()[:3])])
    assert np.allclose(long, cut, atol=1e-5)


def test_a_directory_without_model_onnx_says_what_to_do(model_dir: Path) -> None:
    (model_dir / "model.onnx").unlink()
    message = _one_line_error(str(model_dir))
    assert str(model_dir.resolve()) in message and "no model.onnx" in message
    assert "lexical evidence alone" in message


def test_a_directory_without_tokenizer_json_says_what_to_do(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").unlink()
    message = _one_line_error(str(model_dir))
    assert str(model_dir.resolve()) in message and "no tokenizer.json" in message


def test_a_corrupt_model_file_is_refused_in_one_line(model_dir: Path) -> None:
    (model_dir / "model.onnx").write_bytes(b"\x08\x07not a model\n\nat all")
    message = _one_line_error(str(model_dir))
    assert str(model_dir.resolve()) in message and "model.onnx cannot load" in message
    assert "re-export" in message


def test_a_corrupt_tokenizer_is_refused_in_one_line(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").write_text('{"version": "1.0", "model":')
    message = _one_line_error(str(model_dir))
    assert str(model_dir.resolve()) in message and "tokenizer.json cannot load" in message


def test_an_output_of_unexpected_rank_is_refused(model_dir: Path) -> None:
    _graph(model_dir / "model.onnx", "rank1")
    message = _one_line_error(str(model_dir))
    assert str(model_dir.resolve()) in message and "has rank 1" in message


def test_missing_packages_name_the_pip_command(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    message = _one_line_error(str(model_dir))
    assert str(model_dir.resolve()) in message
    assert "pip install onnxruntime tokenizers" in message


def test_a_path_that_is_no_directory_is_refused(model_dir: Path) -> None:
    message = _one_line_error(str(model_dir / "model.onnx"))
    assert "is not a directory" in message
    message = _one_line_error(str(model_dir / "missing"))
    assert "does not exist" in message


def test_watcher_test_runs_topics_by_meaning_on_a_model_directory(
        model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    titles = [*SENTENCES, SENTENCES[0]]  # the last: the first one republished
    items = "".join(f"<item><title>{t}</title><link>https://example.org/{i}</link></item>"
                    for i, t in enumerate(titles))
    feed = tmp_path / "feed.xml"
    feed.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
                    f"<link>https://example.org/</link>{items}</channel></rss>")
    config = tmp_path / "watcher.toml"
    config.write_text(f"""[watcher]\nstate = "state.db"\nembedding = "{model_dir}"\n
[[topics]]\nname = "evacuation"\nlike = ["{SENTENCES[0]}"]\nabout_threshold = 50
channels = ["out"]\n\n[[channels]]\nname = "out"\ntype = "file"\npath = "alerts.jsonl"\n""")
    assert main(["test", "--config", str(config), "--json", str(feed)]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["title"] for r in rows] == [SENTENCES[0], SENTENCES[0]]  # by meaning alone
    assert [r["duplicate"] for r in rows] == [False, True]
    assert rows[0]["story"] == rows[1]["story"]
    assert "unavailable" not in captured.err


def _rss(path: Path, titles: list[tuple[str, str]]) -> None:
    items = "".join(f"<item><title>{t}</title><guid>{g}</guid>"
                    f"<link>https://{path.stem}.example/{g}</link></item>" for g, t in titles)
    path.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
                    f"<link>https://example.org/</link>{items}</channel></rss>")
    later = path.stat().st_mtime + 60 * int(titles[0][0])  # a later modification time
    os.utime(path, (later, later))


def test_switching_to_a_model_of_another_size_keeps_the_stories(
        model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Stories stored with the bundled model's 384-number vectors, then `embedding` pointed
    at a 64-number model: the restarted watcher runs, and a republished story is still one."""
    wire, other = tmp_path / "wire.xml", tmp_path / "other.xml"
    _rss(wire, [("0", "Bank of Japan holds interest rates steady")])
    _rss(other, [("0", "Tokyo exchange files for bankruptcy")])
    config = tmp_path / "watcher.toml"
    body = f"""[[feeds]]\nurl = "file://{wire}"\n\n[[feeds]]\nurl = "file://{other}"\n
[[topics]]\nname = "evacuation"\nany = ["*"]\nchannels = ["out"]\n
[[channels]]\nname = "out"\ntype = "file"\npath = "alerts.jsonl"\n"""
    config.write_text(f'[watcher]\nstate = "state.db"\n\n{body}')
    assert main(["once", "--config", str(config)]) == 0  # the backlog: only marked seen
    story = "Kursk residents evacuated as Russian governor orders border villages cleared"
    _rss(wire, [("1", story)])
    assert main(["once", "--config", str(config)]) == 0  # alerts, vectors of 384 stored
    config.write_text(f'[watcher]\nstate = "state.db"\nembedding = "{model_dir}"\n\n{body}')
    _rss(other, [("1", story)])  # another outlet carries the same story
    assert main(["once", "--config", str(config)]) == 0
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [a["entry"]["title"] for a in alerts] == [story]
    assert "Traceback" not in capsys.readouterr().err


def test_the_playground_skips_vectors_another_model_stored(
        model_dir: Path, tmp_path: Path) -> None:
    """Entries kept with the bundled model's vectors, or with vectors of the same size made by
    another local model, and a topic by meaning tried on this model: those entries are matched
    on keywords (and the desk says so), never compared with this model's vectors."""
    from datetime import UTC, datetime

    from watcher.config import load_config
    from watcher.desk.model import RecentEntry
    from watcher.desk.playground import evaluate, parse_topic
    from watcher.model import Entry

    config_path = tmp_path / "watcher.toml"
    config_path.write_text(f'[watcher]\nstate = "state.db"\nembedding = "{model_dir}"\n')
    config = load_config(config_path)
    model = load_embedder(str(model_dir))
    topic, raw, problems = parse_topic(f'name = "t"\nlike = ["{SENTENCES[0]}"]\n'
                                       'about_threshold = 50', config)
    assert topic is not None and not problems

    def kept(i: int, title: str, vector: np.ndarray, made_by: str = "") -> RecentEntry:
        return RecentEntry(Entry(key=str(i), guid=None, title=title, link=None,
                                 canonical_link=None, summary="", published=None,
                                 feed_url="http://a.test/f", feed_name="A"),
                           datetime.now(UTC), "en", vector, made_by)

    own = model.embed([SENTENCES[0]])[0]
    entries = [kept(1, SENTENCES[0], own, model.name),
               kept(2, SENTENCES[1], np.ones(384, dtype=np.float32) / np.sqrt(384)),
               # the same sentence, a vector of this size that another model made
               kept(3, SENTENCES[0], own.copy(), "dir:an-earlier-model:0123abcd")]
    result = evaluate(topic, raw, config, entries, model)
    assert result.entries == 3
    assert ["".join(text for text, _ in m.title) for m in result.matches] == [SENTENCES[0]]
    assert "2 entries were stored without an embedding of this model" in result.notice


def test_a_new_models_centres_start_over_and_wait_for_enough_vectors() -> None:
    """The shipped language centres are the bundled model's; after a switch to another size
    they restart, and are not used until they average enough of the new model's vectors."""
    from watcher.story.evidence import CENTRE_PRIOR_WEIGHT, Centres

    centres = Centres()
    prior = centres.get("en")
    assert prior is not None and len(prior) == 384
    rng = np.random.default_rng(1)
    centres.add("en", rng.normal(size=DIM).astype(np.float32))
    assert centres.get("en") is None  # one vector is no mean to centre on
    for _ in range(CENTRE_PRIOR_WEIGHT // 2):
        centres.add("en", rng.normal(size=DIM).astype(np.float32))
    centre = centres.get("en")
    assert centre is not None and len(centre) == DIM
