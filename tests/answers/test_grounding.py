"""The grounding rules, without a model: sentences, support, quotes, the checker.

Vectors are written by hand here (unit vectors on a few axes), so each test states
exactly how near each sentence is to the question; the real embedding model is
used in tests/answers/test_grounded_turns.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

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


def test_normalise_makes_quotes_dashes_and_digit_groups_plain() -> None:
    assert grounding.normalise("“5,000” tokens – you’re   set") == '"5000" tokens - you\'re set'
    assert grounding.normalise("1 000 000") == "1000000"


def _scored(scores: Sequence[float], passage: Sequence[int] = ()) -> list[Supported]:
    return [
        Supported(Sentence(passage[i] if passage else 0, i, f"Sentence number {i}."), s, s, 0.0)
        for i, s in enumerate(scores)
    ]


def test_nothing_supported_enough_composes_nothing() -> None:
    low = grounding.ANSWER_THRESHOLD - 0.01
    assert grounding.compose(_scored([low, low / 2])).text == ""
    assert grounding.compose([]).text == ""


def test_the_best_sentence_is_quoted_with_its_neighbours_and_its_source_label() -> None:
    top = grounding.ANSWER_THRESHOLD + 0.2
    scored = _scored([0.0, top, 0.0, 0.0])
    scored.sort(key=lambda s: -s.score)
    composed = grounding.compose(scored)
    assert composed.text == "Sentence number 0. Sentence number 1. Sentence number 2. [1]"
    assert composed.passages == (0,)


def test_sentences_of_several_passages_are_grouped_by_passage_in_order_of_support() -> None:
    top = grounding.ANSWER_THRESHOLD + 0.2
    scored = [
        Supported(Sentence(1, 0, "The renewal is on the 1st."), top, top, 0.0),
        Supported(Sentence(0, 5, "Packages hold 5,000 tokens."), top - 0.01, top, 0.0),
        Supported(Sentence(2, 0, "Far less relevant text here."), top - 0.5, top, 0.0),
    ]
    composed = grounding.compose(scored)
    assert composed.text == "The renewal is on the 1st. [2]\n\nPackages hold 5,000 tokens. [1]"


def test_a_quote_never_exceeds_what_fits() -> None:
    top = grounding.ANSWER_THRESHOLD + 0.2
    scored = sorted(_scored([top, top - 0.01, top - 0.02]), key=lambda s: -s.score)
    composed = grounding.compose(scored, fits=lambda text: len(text) <= 25)
    assert composed.text == "Sentence number 0. [1]"


def test_when_not_even_the_best_sentence_fits_its_first_words_are_quoted() -> None:
    top = grounding.ANSWER_THRESHOLD + 0.2
    scored = _scored([top])
    composed = grounding.compose(scored, fits=lambda text: len(text) <= 20)
    assert composed.text == "Sentence number… [1]"
    assert grounding.compose(scored, fits=lambda text: False).text == ""


def _axis(*weights: float) -> npt.NDArray[np.float32]:
    vector = np.array(weights, dtype=np.float32)
    return vector / np.linalg.norm(vector)


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
