from __future__ import annotations

import math

import pytest

from buzzi.agents.bm25 import BM25Index, IndexCache, tokenize
from tests.support.agent_factories import FAQ


def index_of(docs: list[dict[str, str]]) -> BM25Index:
    return BM25Index(f"{d['title']}\n{d['content']}" for d in docs)


def test_tokenize_lowercases_folds_accents_splits_and_drops_stop_words() -> None:
    assert tokenize("Where is the CAFÉ? Crème-brûlée, naïve!") == ["cafe", "creme", "brulee", "naive"]
    assert tokenize("How do I reset my password") == ["reset", "password"]
    assert tokenize("the and of") == []
    assert tokenize("") == []


@pytest.mark.parametrize(("query", "expected_title"), [
    ("How do I reset my password?", "Password reset"),
    ("When do you open on saturday", "Opening hours"),
    ("do you ship to germany", "Shipping to Germany"),
    ("I want a refund for my return", "Refund policy"),
])
def test_the_right_document_wins(query: str, expected_title: str) -> None:
    hits = index_of(FAQ).search(query, 3)
    assert hits, query
    assert FAQ[hits[0][0]]["title"] == expected_title


def test_accents_match_in_both_directions() -> None:
    index = index_of(FAQ)
    assert FAQ[index.search("cafe creme brulee", 1)[0][0]]["title"] == "Café menu"
    plain = BM25Index(["resume writing tips", "cover letters"])
    assert plain.search("Résumé", 5)[0][0] == 0


def test_stop_words_alone_and_unknown_words_match_nothing() -> None:
    index = index_of(FAQ)
    assert index.search("what is the", 5) == []
    assert index.search("xylophone quantum", 5) == []
    assert BM25Index([]).search("password", 5) == []


def test_scores_are_positive_sorted_and_limited_to_k() -> None:
    index = index_of(FAQ)
    hits = index.search("shipping refund password opening cafe", 3)
    assert len(hits) == 3
    scores = [s for _, s in hits]
    assert all(s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert index.search("password", 0) == []


def test_score_matches_the_okapi_formula() -> None:
    index = BM25Index(["apple banana", "apple cherry cherry", "date"])
    # N=3, n(cherry)=1, avgdl=2, |d1|=3, tf=2; k1=1.5, b=0.75, Lucene idf
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm = 1 - 0.75 + 0.75 * 3 / 2
    expected = idf * 2 * 2.5 / (2 + 1.5 * norm)
    [(doc, score)] = index.search("cherry", 5)
    assert doc == 1
    assert score == pytest.approx(expected)


def test_rarer_terms_weigh_more_and_shorter_documents_win_ties() -> None:
    index = BM25Index(["common rare", "common filler", "common filler words"])
    assert index.search("common rare", 1)[0][0] == 0
    short_long = BM25Index(["refund", "refund policy details for everything else", "other"])
    hits = short_long.search("refund", 2)
    assert [doc for doc, _ in hits] == [0, 1]
    assert hits[0][1] > hits[1][1]


def test_unit_score_bounds_each_query_term_contribution() -> None:
    index = index_of(FAQ)
    for query in ("reset password", "germany shipping free", "refund"):
        bound = index.unit_score() * len(set(tokenize(query)))
        assert all(0 < s <= bound for _, s in index.search(query, 5))


def test_index_cache_builds_once_per_distinct_documents() -> None:
    cache = IndexCache(max_entries=2)
    first = cache.get(FAQ)
    assert cache.get([dict(d) for d in FAQ]) is first  # equal content, different objects
    changed = [*FAQ[:-1], {"title": "Café menu", "content": "Now serving tea."}]
    second = cache.get(changed)
    assert second is not first
    assert cache.get(changed) is second
    cache.get(FAQ[:1])  # a third entry evicts the least recently used (FAQ)
    assert cache.get(FAQ) is not first  # built again
