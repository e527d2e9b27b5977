"""Entities and relations from text: deterministic, and replaceable behind `Extractor`.

The default takes capitalised phrases ("Graph Store", "Memgraph") and the document's tags as
entities, and relates two entities when they occur in the same sentence. A model-based
extractor (spaCy, an LLM) fits the same protocol.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Words that start sentences or join phrases without naming anything.
_STOPWORDS = """
    a about after all also an and any are as at be because been but by can could did do does
    for from had has have he her his how i if in into is it its may more most my no not of on
    one or our she should so some such than that the their them then there these they this
    those to too was we were what when where which while who why will with would you your
"""
STOPWORDS = frozenset(_STOPWORDS.split())
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
CAPITALISED_PHRASE = re.compile(r"\b[A-Z][\w-]*(?:\s+[A-Z][\w-]*)*")
WORD = re.compile(r"[\w-]+")
# Bounds the pairs one sentence can add (n * (n - 1) / 2).
MAX_ENTITIES_PER_SENTENCE = 12
MAX_KEY_LENGTH = 200


def entity_key(name: str) -> str:
    """What entities are matched on: lower case, single spaces."""
    return " ".join(name.lower().split())[:MAX_KEY_LENGTH]


@dataclass(frozen=True, slots=True)
class ExtractedEntity:
    key: str
    name: str
    kind: str  # "phrase" or "tag"


@dataclass(slots=True)
class Extraction:
    entities: dict[str, ExtractedEntity] = field(default_factory=dict)
    # Unordered pairs of keys (a < b) -> the number of sentences they share.
    relations: dict[tuple[str, str], int] = field(default_factory=dict)


class Extractor(Protocol):
    name: str

    def extract(self, title: str, text: str, tags: Sequence[str]) -> Extraction: ...

    def query_keys(self, query: str) -> list[str]:
        """The entity keys a search query may name."""
        ...


class CapitalisedPhraseExtractor:
    name = "capitalised-phrases"

    def extract(self, title: str, text: str, tags: Sequence[str]) -> Extraction:
        extraction = Extraction()
        for tag in tags:
            key = entity_key(tag)
            if key:
                extraction.entities.setdefault(key, ExtractedEntity(key, tag.strip(), "tag"))
        for sentence in itertools.chain([title], SENTENCE_END.split(text)):
            found: dict[str, str] = {}
            for phrase in self._phrases(sentence):
                found.setdefault(entity_key(phrase), phrase)
            keys = sorted(found)[:MAX_ENTITIES_PER_SENTENCE]
            for key in keys:
                extraction.entities.setdefault(key, ExtractedEntity(key, found[key], "phrase"))
            for pair in itertools.combinations(keys, 2):
                extraction.relations[pair] = extraction.relations.get(pair, 0) + 1
        return extraction

    @staticmethod
    def _phrases(sentence: str) -> Iterable[str]:
        for match in CAPITALISED_PHRASE.finditer(sentence):
            words = match.group().split()
            # "The Graph Store" -> "Graph Store"; a lone "The" or "When" names nothing.
            while words and words[0].lower() in STOPWORDS:
                words.pop(0)
            if words and len(words[0]) > 1:
                yield " ".join(words)

    def query_keys(self, query: str) -> list[str]:
        words = [w.lower() for w in WORD.findall(query)][:64]
        keys = {w for w in words if w not in STOPWORDS and len(w) > 1}
        for size in (2, 3):
            for start in range(len(words) - size + 1):
                gram = words[start : start + size]
                if gram[0] not in STOPWORDS and gram[-1] not in STOPWORDS:
                    keys.add(" ".join(gram))
        return sorted(keys)
