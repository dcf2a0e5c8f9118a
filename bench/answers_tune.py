"""How ``answers/grounding.py``'s thresholds were chosen: a grid over the dev half.

    .venv/bin/python bench/answers_tune.py [--backend sqlite|postgresql]
        [--weights 0.5,0.6,0.7,0.8] [--thresholds 0.36:0.48:0.01] [--most-wrong 0.03]

Trains the evaluation set's collections as ``bench/answers.py`` does, retrieves
every question's passages once through the product's ``retrieve`` (the
assistant's own settings, as a turn does), then replays only the grounding
(``grounding.support``, ``confidence``, ``compose``) for each pair of
``SUPPORT_WEIGHT`` and ``ANSWER_THRESHOLD``: seconds per pair, not minutes.

Prints the pairs with the best correct + rightly abstained share on the dev half
(even question numbers) among those with at most ``--most-wrong`` wrong-but-confident
answers there, each with its held-out test-half figures beside it. The test half
is for reading, never for choosing. ``bench/answers.py`` then measures the chosen
pair through the whole chat turn.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import answers as bench  # noqa: E402
from chatmeter.answers import grounding  # noqa: E402
from chatmeter.answers.grounding import PassageView  # noqa: E402
from chatmeter.db import Database  # noqa: E402


@dataclass
class Retrieved:
    question: bench.Question
    vector: npt.NDArray[np.float32]
    passages: list[PassageView]
    nearest: float  # the question's cosine with the nearest passage


@dataclass
class Replay:
    """The turn's answer in ``quotes`` mode ("" for the fallback), by the module's constants."""

    embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]
    fits: Callable[[str], bool]
    provider: object  # held: the counter in ``fits`` lives only as long as its provider

    def __call__(self, item: Retrieved) -> str:
        found = grounding.sentences(item.passages)
        if not found:
            return ""
        vectors = grounding.sentence_vectors(item.passages, found, self.embed)
        scored = grounding.support(
            item.question.question, item.vector, item.passages, found, vectors
        )
        if grounding.confidence(scored, item.nearest) < grounding.ANSWER_THRESHOLD:
            return ""
        return grounding.compose(scored, fits=self.fits)


def retrieve_all(backend: str, admin_url: str) -> tuple[list[Retrieved], Replay]:
    from chatmeter.assistants.models import Assistant
    from chatmeter.chat.counts import text_counter
    from chatmeter.retrieval.search import retrieve

    found = []
    with bench.backend_url(backend, admin_url) as url:
        Database(url).create_all()
        ctx = bench.make_context(url, pathlib.Path(tempfile.mkdtemp()))
        for collection in bench.load_collections(None):
            assistant_id, _ = bench.train(ctx, collection)
            with ctx.db.read() as session:
                assistant = session.get(Assistant, assistant_id)
                assert assistant is not None
                provider = ctx.provider(assistant.provider, assistant.model)
                count = text_counter(provider)
                for q in collection.questions:
                    vector = ctx.embedder.embed([q.question])[0]
                    passages = retrieve(
                        session,
                        assistant_id=assistant_id,
                        question=q.question,
                        embedder=ctx.embedder,
                        vectors=ctx.vectors,
                        passages=assistant.passages,
                        budget=assistant.context_budget,
                        count_tokens=count,
                        query=vector,
                    )
                    found.append(
                        Retrieved(
                            q,
                            vector,
                            [PassageView(p.heading, p.text, p.sentence_vectors) for p in passages],
                            max((p.similarity for p in passages), default=0.0),
                        )
                    )
                cap = assistant.max_tokens
        replay = Replay(ctx.sentence_vectors, lambda text: count(text) <= cap, provider)
    return found, replay


def shares(items: list[Retrieved], replay: Replay) -> tuple[float, float]:
    """(correct + rightly abstained, wrong but confident) over ``items``."""
    verdicts = collections.Counter(
        bench.verdict(item.question, text, not text) for item in items for text in [replay(item)]
    )
    n = max(1, len(items))
    return (verdicts["correct"] + verdicts["abstained"]) / n, verdicts["wrong"] / n


def span(text: str) -> list[float]:
    start, stop, step = (float(x) for x in text.split(":"))
    steps = round((stop - start) / step)
    return [round(start + i * step, 4) for i in range(steps + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--weights", default="0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--thresholds", default="0.36:0.48:0.01")
    parser.add_argument("--most-wrong", type=float, default=0.03)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CHATMETER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    items, replay = retrieve_all(args.backend, args.postgres)
    dev = [i for i in items if i.question.dev]
    test = [i for i in items if not i.question.dev]
    print(
        f"now: SUPPORT_WEIGHT {grounding.SUPPORT_WEIGHT}, "
        f"ANSWER_THRESHOLD {grounding.ANSWER_THRESHOLD}"
    )
    rows = []
    for weight in (float(w) for w in args.weights.split(",")):
        for threshold in span(args.thresholds):
            grounding.SUPPORT_WEIGHT, grounding.ANSWER_THRESHOLD = weight, threshold
            rows.append((weight, threshold, shares(dev, replay), shares(test, replay)))
    allowed = sorted((r for r in rows if r[2][1] <= args.most_wrong), key=lambda r: -r[2][0])
    print("weight threshold | dev: right, wrong | test: right, wrong")
    for weight, threshold, (d_ok, d_wrong), (t_ok, t_wrong) in allowed[:15]:
        print(
            f"{weight:6.2f} {threshold:9.2f} | {d_ok:6.1%} {d_wrong:5.1%} | "
            f"{t_ok:6.1%} {t_wrong:5.1%}"
        )


if __name__ == "__main__":
    main()
