"""What writes an answer from a prompt, behind one interface: `Generator`.

A generator streams the answer's text in pieces. It raises `GeneratorError` when it cannot
answer (timed out, refused, cut off, or not called at all while its circuit breaker is open);
/ask then answers with the retrieved passages, marked degraded.

`ExtractiveGenerator` (GENERATOR=extractive, the default) needs no model: it answers with the
passages' sentences that share the most words with the question, each followed by the number
of the passage it comes from. `OpenAIGenerator` (chat_client.py) calls an OpenAI-compatible server.

Tokens are estimated the same way for every generator: words and punctuation marks, which
counts within about a fifth of the BPE tokenizers of common models for English prose. A
generator that knows the real counts (an OpenAI-compatible server's `usage`) ends its stream
with them, as `Usage`; the answer then reports those instead of the estimate.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from .lexical import Analyzer

TOKEN = re.compile(r"\w+|[^\w\s]")
# Where a sentence ends: after . ! or ? and blanks, or at a line break.
SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)", re.MULTILINE)
# How many sentences an extractive answer quotes at most.
EXTRACTIVE_SENTENCES = 3

SYSTEM_PROMPT = (
    "Answer the question using only the numbered passages and the facts below. Cite the "
    "passages you use by their number in square brackets, like [1]. If they do not answer the "
    "question, say that the documents do not say."
)


def count_tokens(text: str) -> int:
    """The estimated tokens of `text` (see the module docstring)."""
    return len(TOKEN.findall(text))


def sentences(text: str) -> list[tuple[int, int]]:
    """The (start, end) character spans of the sentences of `text`, blanks trimmed."""
    spans = []
    for match in SENTENCE.finditer(text):
        start, end = match.span()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


@dataclass(frozen=True, slots=True)
class Passage:
    """A stretch of a stored document the prompt quotes: `text` is `document[start:end]`."""

    number: int
    document_id: int
    title: str
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Fact:
    """Two entities the graph relates: named in one sentence of these documents."""

    subject: str
    object: str
    document_ids: tuple[int, ...]

    def line(self) -> str:
        return f"{self.subject} is related to {self.object}"


@dataclass(frozen=True, slots=True)
class Prompt:
    question: str
    passages: Sequence[Passage]
    facts: Sequence[Fact]

    def context(self) -> str:
        """The passages and facts as the model reads them."""
        lines = ["Passages:"]
        lines += [f"[{p.number}] {p.title}: {p.text}" for p in self.passages]
        if self.facts:
            lines.append("Facts:")
            lines += [f"- {fact.line()}" for fact in self.facts]
        return "\n".join(lines)

    def messages(self) -> list[dict[str, str]]:
        """The chat messages: instructions, then the context and the question."""
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{self.context()}\n\nQuestion: {self.question}"},
        ]

    def tokens(self) -> int:
        return sum(count_tokens(message["content"]) for message in self.messages())


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens a generator counted for one answer: its prompt and its completion."""

    prompt: int
    completion: int


# Why an answer is degraded: no complete answer in time; the server refused or cut it off;
# not asked (its circuit breaker is open).
Reason = Literal["generator_timeout", "generator_failed", "generator_unavailable"]


class GeneratorError(Exception):
    """The generator gave no (complete) answer. `reason` is what /ask reports."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Generator(Protocol):
    # What the answers name as their generator ("extractive", "openai").
    kind: str

    def stream(self, prompt: Prompt, max_tokens: int) -> AsyncGenerator[str | Usage]:
        """The answer's text, piece by piece, then its `Usage` if the generator counted its
        tokens; raises `GeneratorError` when there is no (complete) answer."""
        ...


class ExtractiveGenerator:
    """The passages' sentences that best match the question, cited; offline and instant."""

    kind = "extractive"

    def __init__(self) -> None:
        self._analyzer = Analyzer()

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncGenerator[str]:
        for piece in self.answer(prompt, max_tokens):
            yield piece

    def answer(self, prompt: Prompt, max_tokens: int) -> list[str]:
        """Each chosen sentence with its citation, in the order the passages come."""
        wanted = set(self._analyzer.terms(prompt.question))
        scored: list[tuple[int, int, int, str]] = []
        for order, passage in enumerate(prompt.passages):
            for start, end in sentences(passage.text):
                sentence = passage.text[start:end]
                overlap = len(wanted & set(self._analyzer.terms(sentence)))
                if overlap:
                    scored.append((-overlap, order, start, f"{sentence} [{passage.number}]"))
        best = sorted(scored)[:EXTRACTIVE_SENTENCES]
        pieces: list[str] = []
        used = 0
        for _, _, _, sentence in sorted(best, key=lambda item: (item[1], item[2])):
            tokens = count_tokens(sentence)
            if used + tokens > max_tokens:
                break
            pieces.append(sentence if not pieces else f" {sentence}")
            used += tokens
        return pieces
