"""Answering a question: retrieve, build the prompt within its token budget, generate.

1. The hybrid search (`SearchEngine`) ranks the k documents that answer the question best.
2. Each document gives one passage: its sentence sharing the most words with the question
   (the first, for a document only the graph walk found), widened by its neighbours up to
   PASSAGE_CHARS characters. Passages go into the prompt in the search's order while they fit
   in the token budget (a passage that does not fit is left out, a later shorter one may
   still fit); then the graph facts that fit: pairs of entities related in the passages'
   sentences (the relations the graph store holds), those naming the question's entities first.
3. The generator writes the answer; the citations are the passages it cites as [n].

When the generator fails (timed out, refused, cut off, its breaker open) the answer is the
passages themselves, with `degraded: true` and the reason: never an error. Only what the
search itself cannot do without (the graph store, the database) is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

from prometheus_client import Counter

from ...db import Database
from ...observability import Metrics
from ...settings import Settings
from ..extract import Extractor
from ..generate import (
    Fact,
    Generator,
    GeneratorError,
    Passage,
    Prompt,
    Reason,
    Usage,
    count_tokens,
    sentences,
)
from ..lexical import Analyzer
from ..search.service import SearchEngine
from . import repository
from .schemas import Answer, AskRequest, Citation, GraphFact, Timings, Tokens

logger = logging.getLogger(__name__)

# The most characters one passage quotes (whole sentences; a longer sentence is quoted whole).
PASSAGE_CHARS = 600
# The most graph facts a prompt carries.
MAX_FACTS = 10
CITED = re.compile(r"\[(\d+)\]")


@dataclass(slots=True)
class Prepared:
    """A question retrieved for and its prompt built: what the generator is given."""

    request: AskRequest
    prompt: Prompt
    budget: int
    dropped: int
    max_tokens: int
    search_degraded: bool
    started: float
    search_ms: float
    pieces: list[str] = field(default_factory=list)
    # The tokens the generator counted, when it says.
    usage: Usage | None = None


class Asker:
    name = "asker"

    def __init__(
        self,
        settings: Settings,
        database: Database,
        engine: SearchEngine,
        extractor: Extractor,
        generator: Generator,
        metrics: Metrics,
    ) -> None:
        self._database = database
        self.engine = engine
        self.extractor = extractor
        self.generator = generator
        self.context_tokens = settings.ask_context_tokens
        self.max_tokens = settings.ask_max_tokens
        self._analyzer = Analyzer()
        self._degraded = Counter(
            "ask_degraded_total",
            "Answers given as the retrieved passages because the generator failed, by reason.",
            ("reason",),
            registry=metrics.registry,
        )

    async def prepare(self, request: AskRequest) -> Prepared:
        """Search and build the prompt. Raises ServiceUnavailableError when the search cannot
        run (the graph store or the database down)."""
        started = time.perf_counter()
        result = await self.engine.search(request.question, request.k, depth=request.depth)
        ids = [hit.document_id for hit in result.hits]
        async with self._database.session() as session:
            texts = await repository.texts(session, ids)
        search_ms = (time.perf_counter() - started) * 1000
        budget = request.context_tokens or self.context_tokens
        ranked = [(i, *texts[i]) for i in ids if i in texts]
        prompt, dropped = await asyncio.to_thread(
            self.build_prompt, request.question, ranked, budget
        )
        return Prepared(
            request=request,
            prompt=prompt,
            budget=budget,
            dropped=dropped,
            max_tokens=request.max_tokens or self.max_tokens,
            search_degraded=result.degraded,
            started=started,
            search_ms=search_ms,
        )

    def build_prompt(
        self, question: str, documents: list[tuple[int, str, str]], budget: int
    ) -> tuple[Prompt, int]:
        """The prompt for `question` from `documents` (id, title, text; best first) and the
        number of passages left out to keep passages and facts within `budget` tokens."""
        wanted = set(self._analyzer.terms(question))
        passages: list[Passage] = []
        dropped = 0
        for document_id, title, text in documents:
            start, end = self._passage_span(text, wanted)
            if end <= start:
                continue
            passage = Passage(len(passages) + 1, document_id, title, start, end, text[start:end])
            if count_tokens(Prompt(question, [*passages, passage], []).context()) > budget:
                dropped += 1
                continue
            passages.append(passage)
        facts: list[Fact] = []
        for fact in self._facts(question, passages):
            if len(facts) == MAX_FACTS:
                break
            if count_tokens(Prompt(question, passages, [*facts, fact]).context()) <= budget:
                facts.append(fact)
        return Prompt(question, passages, facts), dropped

    def _passage_span(self, text: str, wanted: set[str]) -> tuple[int, int]:
        spans = sentences(text)
        if not spans:
            return 0, 0
        overlaps = [len(wanted & set(self._analyzer.terms(text[s:e]))) for s, e in spans]
        best = max(range(len(spans)), key=lambda i: (overlaps[i], -i))
        first = last = best
        while True:
            grown = False
            if last + 1 < len(spans) and spans[last + 1][1] - spans[first][0] <= PASSAGE_CHARS:
                last += 1
                grown = True
            if first > 0 and spans[last][1] - spans[first - 1][0] <= PASSAGE_CHARS:
                first -= 1
                grown = True
            if not grown:
                return spans[first][0], spans[last][1]

    def _facts(self, question: str, passages: list[Passage]) -> list[Fact]:
        """Entity pairs related in the passages' sentences, the question's entities first."""
        keys = set(self.extractor.query_keys(question))
        names: dict[str, str] = {}
        found: dict[tuple[str, str], set[int]] = {}
        for passage in passages:
            extraction = self.extractor.extract("", passage.text, ())
            for key, entity in extraction.entities.items():
                names.setdefault(key, entity.name)
            for pair in extraction.relations:
                found.setdefault(pair, set()).add(passage.document_id)
        ranked = sorted(
            found.items(),
            key=lambda item: (
                -len(keys.intersection(item[0])),
                -len(item[1]),
                item[0],
            ),
        )
        return [Fact(names[a], names[b], tuple(sorted(ids))) for (a, b), ids in ranked]

    async def run(self, prepared: Prepared) -> AsyncGenerator[str | Answer]:
        """The answer's text piece by piece as the generator writes it, then the `Answer`
        (whose text is empty when degraded: only the pieces sent before the failure exist)."""
        prompt = prepared.prompt
        reason: Reason | None = None
        first_token: float | None = None
        generate_started = time.perf_counter()
        if prompt.passages:  # nothing retrieved: nothing to answer from, no call
            try:
                stream = self.generator.stream(prompt, prepared.max_tokens)
                async with aclosing(stream) as pieces:
                    async for piece in pieces:
                        if isinstance(piece, Usage):
                            prepared.usage = piece
                            continue
                        if first_token is None:
                            first_token = time.perf_counter()
                        prepared.pieces.append(piece)
                        yield piece
            except GeneratorError as exc:
                reason = exc.reason
                self._degraded.labels(reason).inc()
                logger.warning(
                    "answer degraded to the passages",
                    extra={"reason": reason, "error": exc.detail},
                )
        done = time.perf_counter()
        yield self._answer(prepared, reason, generate_started, first_token, done)

    async def answer(self, prepared: Prepared) -> Answer:
        """The whole answer at once."""
        async for item in self.run(prepared):
            if isinstance(item, Answer):
                return item
        raise AssertionError("run() ends with the answer")

    def _answer(
        self,
        prepared: Prepared,
        reason: Reason | None,
        generate_started: float,
        first_token: float | None,
        done: float,
    ) -> Answer:
        prompt = prepared.prompt
        text = "" if reason is not None else "".join(prepared.pieces)
        usage = prepared.usage if reason is None else None
        passages = list(prompt.passages)
        if reason is None and text:
            cited = {int(number) for number in CITED.findall(text)}
            # A model that cites nothing still answered from the passages it was given.
            passages = [p for p in passages if p.number in cited] or passages
        elif reason is None:
            passages = []

        def ms(since: float, until: float) -> float:
            return round((until - since) * 1000, 3)

        return Answer(
            question=prepared.request.question,
            answer=text,
            degraded=reason is not None,
            reason=reason,
            generator=self.generator.kind,
            search_degraded=prepared.search_degraded,
            citations=[
                Citation(
                    number=p.number,
                    document_id=p.document_id,
                    title=p.title,
                    start=p.start,
                    end=p.end,
                    text=p.text,
                )
                for p in passages
            ],
            facts=[
                GraphFact(subject=f.subject, object=f.object, document_ids=list(f.document_ids))
                for f in prompt.facts
            ],
            tokens=Tokens(
                prompt=usage.prompt if usage else prompt.tokens(),
                completion=usage.completion if usage else count_tokens(text),
                counted_by="generator" if usage else "estimate",
                context_budget=prepared.budget,
                passages_dropped=prepared.dropped,
            ),
            timings=Timings(
                search_ms=round(prepared.search_ms, 3),
                generate_ms=ms(generate_started, done),
                first_token_ms=None if first_token is None else ms(prepared.started, first_token),
                total_ms=ms(prepared.started, done),
            ),
        )
