"""Okapi BM25 over a company's FAQ documents (tens to thousands of entries), in plain Python.

Scores use the Lucene idf, log(1 + (N - n + 0.5) / (n + 0.5)), which stays positive even for a
term found in every document, so "score > 0" means "shares at least one term with the query".
Built indexes are cached by a hash of the documents, so a hot agent does not re-index per message.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import unicodedata
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

K1 = 1.5
B = 0.75

# Short on purpose: function words that carry no topic in a support question. Dropping them keeps
# "how do I reset my password" from matching every document that contains "how" or "my".
STOP_WORDS = frozenset("""
a an and are as at be been but by can could did do does for from had has have how i if in into is
it its me my no not of on or our so than that the their them then there these they this to too
us was we were what when where which who why will with would you your yours i'm it's don't
""".split())

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-case, fold accents (NFKD, combining marks dropped), split on non-word characters,
    drop stop words."""
    folded = text.lower()
    if not folded.isascii():  # the common all-ASCII case skips the per-character pass
        folded = unicodedata.normalize("NFKD", folded)
        folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [tok for tok in _WORD.findall(folded) if tok not in STOP_WORDS]


class BM25Index:
    def __init__(self, texts: Iterable[str], k1: float = K1, b: float = B) -> None:
        self.k1 = k1
        self.b = b
        self._tfs: list[Counter[str]] = [Counter(tokenize(text)) for text in texts]
        self._lengths = [sum(tf.values()) for tf in self._tfs]
        self.size = len(self._tfs)
        self._avgdl = (sum(self._lengths) / self.size) if self.size else 0.0
        # postings: term -> documents containing it, so a query touches only candidate documents
        postings: defaultdict[str, list[int]] = defaultdict(list)
        for i, tf in enumerate(self._tfs):
            for term in tf:
                postings[term].append(i)
        self._postings = dict(postings)
        self._idf = {term: self._idf_of(len(docs)) for term, docs in self._postings.items()}

    def _idf_of(self, n: int) -> float:
        return math.log(1.0 + (self.size - n + 0.5) / (n + 0.5))

    def idf(self, term: str) -> float:
        """idf of a term; a term in no document gets the largest idf the corpus allows."""
        return self._idf.get(term, self._idf_of(0))

    def search(self, query: str, k: int = 5) -> list[tuple[int, float]]:
        """The k best (document index, score) pairs, best first; only positive scores."""
        if k <= 0 or not self.size:
            return []
        scores: dict[int, float] = {}
        for term in set(tokenize(query)):
            postings = self._postings.get(term)
            if not postings:
                continue
            idf = self._idf[term]
            for i in postings:
                tf = self._tfs[i][term]
                norm = 1.0 - self.b + self.b * (self._lengths[i] / self._avgdl if self._avgdl else 0.0)
                scores[i] = scores.get(i, 0.0) + idf * tf * (self.k1 + 1) / (tf + self.k1 * norm)
        ranked = sorted(((i, s) for i, s in scores.items() if s > 0), key=lambda p: (-p[1], p[0]))
        return ranked[:k]

    def unit_score(self) -> float:
        """The most one query term can add to a score: a term found in no other document
        (largest idf) repeated without limit (tf saturation -> k1 + 1). A natural scale for
        turning scores into a 0..1 confidence that terms common to every document cannot reach."""
        return self._idf_of(0) * (self.k1 + 1)


def document_text(doc: Mapping[str, Any]) -> str:
    # The title is where FAQ authors put the question, so it is indexed along with the answer.
    return f"{doc.get('title', '')}\n{doc.get('content', '')}"


def documents_key(documents: Sequence[Mapping[str, Any]]) -> str:
    digest = hashlib.sha256()
    for doc in documents:
        for part in (str(doc.get("title", "")), str(doc.get("content", ""))):
            raw = part.encode("utf-8", "surrogatepass")
            digest.update(len(raw).to_bytes(8, "big"))  # length prefix: no two lists hash alike
            digest.update(raw)
    return digest.hexdigest()


class IndexCache:
    """A small LRU of built indexes keyed by documents_key; safe to share between threads."""

    def __init__(self, max_entries: int = 128) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, BM25Index] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, documents: Sequence[Mapping[str, Any]]) -> BM25Index:
        key = documents_key(documents)
        with self._lock:
            index = self._entries.get(key)
            if index is not None:
                self._entries.move_to_end(key)
                return index
        index = BM25Index(document_text(d) for d in documents)
        with self._lock:
            self._entries[key] = index
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return index


INDEXES = IndexCache()
