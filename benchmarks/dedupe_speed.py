"""Time of one StoryIndex.find with 10,000 open stories in one topic (the worst case).

Run: .venv/bin/python benchmarks/dedupe_speed.py [--stories N] [--queries N] [--seed S]

Stories are the 3,100 real UCI headlines, perturbed into 10,000 distinct ones (words
dropped, swapped and borrowed from other headlines, numbers added), each with a summary
stitched from two other headlines and the topic's own word in every one of them (as a topic
phrase would be). Queries: half are rewordings of stored stories with trimmed summaries (they
should be found), half fresh perturbations of random headlines (often a match too: each
headline has about three perturbed copies stored). Reported: mean, median, p99 and max time
per find, as wall clock and as this thread's CPU time (which other processes on a busy
machine do not inflate); the answers are also checked against an exhaustive scan of all open
stories, to show what the bounded candidate retrieval costs in answers.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from watcher.matching.dedupe import StoryIndex, StoryText, _Prepared, _score, prepare  # noqa: E402

UCI = ROOT / "tests" / "data" / "stories" / "uci-news-aggregator-subset.csv"
TOPIC = "kursk-evacuation"
START = datetime(2025, 2, 24, tzinfo=UTC)


def headlines() -> list[str]:
    with UCI.open(encoding="utf-8") as f:
        return [row["TITLE"] for row in csv.DictReader(f)]


def perturb(title: str, pool: list[str], rng: random.Random) -> str:
    words = title.split()
    if len(words) > 4 and rng.random() < 0.5:
        del words[rng.randrange(len(words))]
    if len(words) > 3 and rng.random() < 0.5:
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    for _ in range(rng.randint(1, 3)):
        donor = rng.choice(pool).split()
        words.insert(rng.randrange(len(words) + 1), rng.choice(donor))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), str(rng.randint(2, 5000)))
    if rng.random() < 0.5:
        words.insert(0, "Kursk:")
    return " ".join(words)


def build(n: int, pool: list[str], rng: random.Random) -> tuple[StoryIndex, list[StoryText]]:
    index = StoryIndex(timedelta(hours=72))
    texts: list[StoryText] = []
    for i in range(n):
        title = perturb(pool[i % len(pool)], pool, rng)
        summary = f"{rng.choice(pool)}. In the Kursk region, {rng.choice(pool)}"
        text = StoryText(title, summary)
        texts.append(text)
        index.add(f"s{i}", TOPIC, title, summary, START + timedelta(seconds=15 * i))
    return index, texts


def exhaustive(index: StoryIndex, stored: list[_Prepared], query: StoryText) -> str | None:
    """The answer find() would give if it scored every open story (same tie-break)."""
    prepared = prepare(query)
    best, best_id = index.threshold, None
    for i, other in enumerate(stored):
        score = _score(prepared, other)
        if score >= best and (best_id is None or score > best):
            best, best_id = score, f"s{i}"
    return best_id


def p99(sorted_values: list[float]) -> float:
    return sorted_values[int(0.99 * (len(sorted_values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--checked", type=int, default=200, help="queries also scanned fully")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pool = headlines()
    started = time.perf_counter()
    index, texts = build(args.stories, pool, rng)
    print(f"built {len(index)} open stories in one topic in {time.perf_counter() - started:.1f} s")

    queries: list[tuple[StoryText, bool]] = []
    for q in range(args.queries):
        if q % 2 == 0:
            known = rng.choice(texts)
            title = perturb(known.title, pool, random.Random(q))
            queries.append((StoryText(title, known.summary[: rng.randint(40, 200)]), True))
        else:
            queries.append(
                (StoryText(perturb(rng.choice(pool), pool, rng), rng.choice(pool)), False)
            )
    at = START + timedelta(seconds=15 * args.stories)

    times: list[float] = []  # wall clock, ms
    cpu: list[float] = []  # this thread's CPU time, ms (unaffected by other processes)
    answers: list[str | None] = []
    for text, _ in queries:
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        answers.append(index.find(TOPIC, text.title, text.summary, at))
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        times.append((time.perf_counter_ns() - w0) / 1e6)
    times.sort()
    cpu.sort()
    print(
        f"find over {len(times)} entries: mean {statistics.fmean(times):.3f} ms, median "
        f"{statistics.median(times):.3f} ms, p99 {p99(times):.3f} ms, max {times[-1]:.3f} ms "
        f"(CPU time: mean {statistics.fmean(cpu):.3f} ms, p99 {p99(cpu):.3f} ms)"
    )
    reworded = [a for a, (_, known) in zip(answers, queries, strict=True) if known]
    print(f"reworded stored stories found: {sum(a is not None for a in reworded)}/{len(reworded)}")

    stored = [prepare(text) for text in texts]
    checked = range(0, len(queries), max(1, len(queries) // args.checked))
    full = {i: exhaustive(index, stored, queries[i][0]) for i in checked}
    same = sum(answers[i] == full[i] for i in checked)
    missed = sum(answers[i] is None and full[i] is not None for i in checked)
    print(
        f"same answer as an exhaustive scan: {same}/{len(checked)} queries; of the others, "
        f"{missed} found no story where the scan found one, {len(checked) - same - missed} "
        "picked another story above the threshold"
    )


if __name__ == "__main__":
    main()
