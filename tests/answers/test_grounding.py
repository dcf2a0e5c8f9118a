"""The grounding rules, without a model: sentences, support, quotes, the checker.

Vectors are written by hand here (unit vectors on a few axes), so each test states
exactly how near each sentence is to the question; the real embedding model is
used in tests/answers/test_grounded_turns.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from chatmeter.answers import grounding
from chatmeter.answers.grounding import PassageView, Sentence, Supported


def test_sentences_split_paragraphs_list_items_and_sentence_ends() -> None:
    passage = PassageView(
        "Buying tokens",
        "# Buying tokens\n\nTokens are sold in packages of 5,000. One package costs\n"
        "9 euros.\n\n- Renewal happens on the 1st.\n- Unused tokens expire.\n\nok\n",
    )
    texts = [s.text for s in grounding.sentences([passage])]
    assert texts == [
        "Tokens are sold in packages of 5,000.",
        "One package costs 9 euros.",
        "Renewal happens on the 1st.",
        "Unused tokens expire.",
    ]  # the heading and the fragment "ok" are not sentences


def test_a_term_on_a_line_of_its_own_is_joined_to_the_paragraph_it_names() -> None:
    passage = PassageView(
        "Implementations",
        "Jython\n\nPython implemented in Java.\n\n"
        "## Notes\n\nShort heading-like line\n\n- An item that follows it.\n",
    )
    assert [s.text for s in grounding.sentences([passage])] == [
        "Jython: Python implemented in Java.",
        "Short heading-like line",
        "An item that follows it.",
    ]


def test_normalise_makes_quotes_dashes_and_digit_groups_plain() -> None:
    assert grounding.normalise("“5,000” tokens – you’re   set") == '"5000" tokens - you\'re set'
    assert grounding.normalise("1 000 000") == "1000000"


def _scored(scores: Sequence[float], passage: Sequence[int] = ()) -> list[Supported]:
    return [
        Supported(Sentence(passage[i] if passage else 0, i, f"Sentence number {i}."), s, s, 0.0)
        for i, s in enumerate(scores)
    ]


def test_confidence_weighs_the_best_sentence_and_the_nearest_passage() -> None:
    scored = _scored([0.6, 0.1])
    sure = grounding.confidence(scored, passage_cosine=0.2)
    assert sure == pytest.approx(
        grounding.SUPPORT_WEIGHT * 0.6 + (1 - grounding.SUPPORT_WEIGHT) * 0.2
    )
    assert grounding.confidence([], passage_cosine=0.9) == pytest.approx(
        (1 - grounding.SUPPORT_WEIGHT) * 0.9
    )
    # A sentence that shares the question's words by chance is not enough on its own,
    # nor is a passage on the subject without a sentence that says the point.
    assert grounding.confidence(_scored([0.5]), 0.1) < grounding.ANSWER_THRESHOLD
    assert grounding.confidence(_scored([0.1]), 0.9) < grounding.ANSWER_THRESHOLD
    assert grounding.confidence(_scored([0.45]), 0.5) >= grounding.ANSWER_THRESHOLD


def test_nothing_to_quote_composes_nothing() -> None:
    assert grounding.compose([]) == ""


def test_the_best_sentence_is_quoted_with_its_neighbours_and_its_source_label() -> None:
    scored = _scored([0.0, 0.6, 0.0, 0.0])
    scored.sort(key=lambda s: -s.score)
    composed = grounding.compose(scored, most=1)
    assert composed == "Sentence number 0. Sentence number 1. Sentence number 2. [1]"


def test_the_best_sentences_of_several_passages_are_grouped_by_passage_best_first() -> None:
    scored = [
        Supported(Sentence(1, 0, "The renewal is on the 1st."), 0.6, 0.6, 0.0),
        Supported(Sentence(0, 5, "Packages hold 5,000 tokens."), 0.59, 0.6, 0.0),
        Supported(Sentence(2, 0, "Far less relevant text here."), 0.1, 0.6, 0.0),
        Supported(Sentence(2, 1, "Fourth and last of all."), 0.05, 0.6, 0.0),
    ]
    assert grounding.compose(scored) == (
        "The renewal is on the 1st. [2]\n\nPackages hold 5,000 tokens. [1]\n\n"
        "Far less relevant text here. Fourth and last of all. [3]"
    )


def test_the_best_sentences_come_before_any_neighbour_when_room_is_short() -> None:
    # Sentences 0 and 3 of one passage are the best; their neighbours 1 and 2 (and 4)
    # are quoted only if they still fit, the one after a best sentence first.
    scored = sorted(_scored([0.6, 0.1, 0.0, 0.5, 0.05]), key=lambda s: -s.score)
    both = "Sentence number 0. Sentence number 3. [1]"
    assert grounding.compose(scored, most=2, fits=lambda text: len(text) <= len(both)) == both
    after = "Sentence number 0. Sentence number 1. Sentence number 3. [1]"
    assert grounding.compose(scored, most=2, fits=lambda t: len(t) <= len(after)) == after


def test_a_quote_never_exceeds_what_fits() -> None:
    scored = sorted(_scored([0.6, 0.59, 0.58]), key=lambda s: -s.score)
    assert grounding.compose(scored, fits=lambda text: len(text) <= 25) == "Sentence number 0. [1]"


def test_when_not_even_the_best_sentence_fits_its_first_words_are_quoted() -> None:
    scored = _scored([0.6])
    assert grounding.compose(scored, fits=lambda text: len(text) <= 20) == "Sentence number… [1]"
    assert grounding.compose(scored, fits=lambda text: False) == ""


def _axis(*weights: float) -> npt.NDArray[np.float32]:
    vector = np.array(weights, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_a_sentence_is_as_near_as_it_is_when_read_with_its_neighbours() -> None:
    passages = [PassageView("", "Tokens come in packages. They renew on the first day.")]
    found = grounding.sentences(passages)
    vectors = np.stack([_axis(1, 0), _axis(0, 1)])
    scored = grounding.support("When?", _axis(1, 1), passages, found, vectors)
    by_text = {s.sentence.text: s for s in scored}
    # Alone each is 0.71 from the question; read together they are the question.
    assert by_text["They renew on the first day."].cosine == pytest.approx(1.0)
    assert by_text["Tokens come in packages."].cosine == pytest.approx(1.0)
    lone = grounding.support(
        "When?", _axis(1, 1), passages[:1], found[:1], vectors[:1]
    )  # no neighbour: its own cosine
    assert lone[0].cosine == pytest.approx(float(_axis(1, 0) @ _axis(1, 1)))


def test_support_prefers_the_sentence_with_the_rare_words_of_the_question() -> None:
    passages = [PassageView("Scopes", "Use nonlocal to rebind it. A function has a scope.")]
    found = grounding.sentences(passages)
    vectors = np.stack([_axis(1, 1), _axis(1, 1)])  # equally near: words decide
    scored = grounding.support(
        "How does a nested function rebind a variable, nonlocal?",
        _axis(1, 1),
        passages,
        found,
        vectors,
    )
    assert scored[0].sentence.text == "Use nonlocal to rebind it."
    assert scored[0].coverage > scored[1].coverage


def test_the_checker_drops_sentences_far_from_the_passages_or_with_numbers_not_in_them() -> None:
    table = {
        "Tokens are sold in packages of 5,000.": _axis(1, 0, 0),
        "Packages hold 5,000 tokens.": _axis(0.99, 0.1, 0),
        "Packages hold 7,000 tokens.": _axis(0.99, 0.1, 0),
        "PayPal is accepted in Australia.": _axis(0, 0, 1),
    }

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.stack([table[t] for t in texts])

    checker = grounding.SentenceChecker(
        embed, [PassageView("Buying", "Tokens are sold in packages of 5,000.")]
    )
    assert checker.supported("Packages hold 5,000 tokens.")
    assert not checker.supported("Packages hold 7,000 tokens.")  # a number not in the passages
    assert not checker.supported("PayPal is accepted in Australia.")  # nothing near it


def test_split_generated_keeps_the_unfinished_sentence_for_later() -> None:
    done, rest = grounding.split_generated("One package is 5,000 tokens. It costs 9")
    assert (done, rest) == (["One package is 5,000 tokens."], "It costs 9")
