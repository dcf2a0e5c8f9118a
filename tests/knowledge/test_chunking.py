"""Chunks fit the embedding model, keep their headings, cover the text in order, and overlap.

Token counts come from the real all-MiniLM-L6-v2 tokenizer: the promise is
that the model reads every chunk whole, so nothing else can stand in for it.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatmeter.knowledge.chunking import Chunk, chunk, embedding_text, sections
from chatmeter.knowledge.document import Block, Document, Page
from chatmeter.knowledge.embeddings import MiniLMEmbedder
from chatmeter.knowledge.extract import extract
from chatmeter.knowledge.splitting import split
from tests.knowledge import files

count_tokens = MiniLMEmbedder().count_tokens  # the tokenizer only: fast to load
SPECIAL = count_tokens("")  # [CLS] and [SEP]


def document(*blocks: Block, pages: int = 1) -> Document:
    return Document(
        format="txt",
        title="t",
        pages=[Page(number=n, text="", blocks=list(blocks)) for n in range(1, pages + 1)],
    )


def sentence(n: int, words: int = 12) -> str:
    return " ".join(f"word{n}x{i}" for i in range(words)) + "."


def assert_fits(chunks: list[Chunk], max_tokens: int) -> None:
    for piece in chunks:
        assert piece.text and piece.text == piece.text.strip()
        assert piece.tokens == count_tokens(piece.embedding_text) <= max_tokens


# --- by example ----------------------------------------------------------------


def test_a_section_that_fits_is_one_chunk_under_its_headings() -> None:
    body = "One package holds 50,000 tokens.\n\nThey never expire."
    [only] = chunk(document(Block(("Billing", "Packages"), body)), count_tokens=count_tokens)

    assert only.embedding_text == f"Billing › Packages\n{body}"
    assert only == Chunk(
        index=0,
        page=1,
        heading_path=("Billing", "Packages"),
        text=body,
        tokens=count_tokens(only.embedding_text),
    )


def test_sections_and_pages_are_never_merged() -> None:
    doc = document(Block(("A",), "alpha"), Block(("B",), "beta"), Block(("B",), "gamma"), pages=2)
    chunks = chunk(doc, count_tokens=count_tokens)

    assert [(c.index, c.page, c.heading_path, c.text) for c in chunks] == [
        (0, 1, ("A",), "alpha"),
        (1, 1, ("B",), "beta\n\ngamma"),
        (2, 2, ("A",), "alpha"),
        (3, 2, ("B",), "beta\n\ngamma"),
    ]


def test_long_sections_are_cut_between_paragraphs_when_paragraphs_fit() -> None:
    paragraphs = [" ".join(sentence(p * 10 + s) for s in range(3)) for p in range(6)]
    chunks = chunk(
        document(Block(("Guide",), "\n\n".join(paragraphs))),
        count_tokens=count_tokens,
        max_tokens=200,
        overlap_tokens=0,
    )

    assert len(chunks) > 1
    assert_fits(chunks, 200)
    for piece in chunks:
        assert piece.text.split("\n\n")[-1] in paragraphs  # ends where a paragraph ends
        assert piece.heading_path == ("Guide",)


def test_a_long_paragraph_is_cut_between_sentences_with_overlap() -> None:
    text = " ".join(sentence(n, words=8) for n in range(40))
    chunks = chunk(
        document(Block((), text)), count_tokens=count_tokens, max_tokens=120, overlap_tokens=30
    )

    assert len(chunks) > 2
    assert_fits(chunks, 120)
    for before, after in itertools.pairwise(chunks):
        assert before.text.endswith(".")
        # The next chunk starts with a whole sentence repeated from this one.
        first_sentence = after.text.split(". ")[0] + "."
        assert first_sentence in before.text
        assert 0 < count_tokens(first_sentence) - SPECIAL <= 30


def test_a_sentence_longer_than_the_window_is_cut_between_words() -> None:
    text = " ".join(f"token{i}" for i in range(400))
    chunks = chunk(document(Block((), text)), count_tokens=count_tokens)

    assert len(chunks) > 2
    assert_fits(chunks, 200)
    assert all(re.fullmatch(r"token\d+( token\d+)*", c.text) for c in chunks)


@pytest.mark.parametrize("blob", ["-".join(["ab"] * 3000), "日本語のテキスト" * 500])
def test_text_without_spaces_is_still_cut_to_fit(blob: str) -> None:
    chunks = chunk(document(Block((), blob)), count_tokens=count_tokens)

    assert len(chunks) > 1
    assert_fits(chunks, 200)


def test_csv_rows_stay_whole() -> None:
    rows = "\n".join(f"Plan {n},{n * 1000},Includes support by email and chat" for n in range(80))
    doc = extract(f"Plan,Tokens,Notes\n{rows}\n".encode(), filename="plans.csv", max_bytes=10**6)
    chunks = chunk(doc, count_tokens=count_tokens, overlap_tokens=0)

    assert len(chunks) > 1
    for piece in chunks:
        for row in piece.text.split("\n\n"):
            assert re.fullmatch(
                r"Plan: Plan \d+; Tokens: \d+; Notes: Includes support by email "
                r"and chat",
                row,
            )


def test_an_absurdly_long_heading_path_is_shortened_so_text_keeps_room() -> None:
    long_heading = " ".join(f"heading{i}" for i in range(120))
    path = ("Outer", "Middle", long_heading)
    chunks = chunk(document(Block(path, "Short body text.")), count_tokens=count_tokens)

    [only] = chunks
    assert only.text == "Short body text."
    assert len(only.heading_path) == 1 and only.heading_path[0].endswith(" …")
    assert only.heading_path[0].startswith("heading0 heading1")
    assert count_tokens(" › ".join(only.heading_path)) <= SPECIAL + 200 // 4


def test_outer_headings_go_first_when_the_path_is_too_long() -> None:
    path = tuple(f"Chapter {n} " + "words " * 6 for n in range(6))
    [only] = chunk(document(Block(path, "Body.")), count_tokens=count_tokens)
    assert only.heading_path == path[-len(only.heading_path) :]
    assert 1 <= len(only.heading_path) < len(path)


def test_the_real_pdf_chunks_by_page_and_bookmark() -> None:
    data = files.pdf(
        [
            [("Intro", ["Chatmeter answers from your files."])],
            [(None, ["Still the intro."]), ("Prices", ["A package is 20 EUR."])],
        ]
    )
    doc = extract(data, filename="h.pdf", max_bytes=10**6)
    chunks = chunk(doc, count_tokens=count_tokens)

    assert [(c.page, c.heading_path, c.text) for c in chunks] == [
        (1, ("Intro",), "Chatmeter answers from your files."),
        (2, ("Intro",), "Still the intro."),
        (2, ("Prices",), "A package is 20 EUR."),
    ]


def test_empty_blocks_make_no_chunks() -> None:
    assert chunk(document(Block((), "  \n "), Block(("A",), "")), count_tokens=count_tokens) == []


@pytest.mark.parametrize(("max_tokens", "overlap"), [(10, 0), (200, -1), (200, 101)])
def test_settings_that_leave_no_room_are_rejected(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk(
            document(Block((), "text")),
            count_tokens=count_tokens,
            max_tokens=max_tokens,
            overlap_tokens=overlap,
        )


# --- properties ----------------------------------------------------------------

word = st.text(alphabet=st.characters(categories=("Ll", "Lu", "Lo", "Nd")), min_size=1, max_size=8)
separators = st.sampled_from([" ", " ", " ", " ", ". ", "! ", "\n", ".\n\n", "\n\n", ", "])


@st.composite
def sectioned_documents(draw: st.DrawFn) -> tuple[Document, list[tuple[str, ...]]]:
    size = draw(st.integers(1, 600))  # lists left to themselves stay short: too short to cut
    # Words are unique within a document (an index makes them so), so where a
    # chunk sits in its section is unambiguous.
    vocabulary = [
        f"{w}{n}" for n, w in enumerate(draw(st.lists(word, min_size=size, max_size=size)))
    ]
    blocks, paths, position = [], [], 0
    while position < len(vocabulary):
        size = draw(st.integers(1, 300))
        part = vocabulary[position : position + size]
        position += size
        text = part[0] + "".join(draw(separators) + word for word in part[1:])
        path = tuple(
            draw(st.lists(st.sampled_from(["Guide", "Setup", "FAQ", "Billing"]), max_size=3))
        )
        blocks.append(Block(path, text))
        paths.append(path)
    return document(*blocks), paths


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sectioned_documents(), st.integers(40, 200), st.integers(0, 40))
def test_chunks_fit_keep_headings_and_cover_each_section_in_order_with_overlap(
    drawn: tuple[Document, list[tuple[str, ...]]], max_tokens: int, overlap: int
) -> None:
    doc, _ = drawn
    overlap = min(overlap, max_tokens // 2)
    chunks = chunk(doc, count_tokens=count_tokens, max_tokens=max_tokens, overlap_tokens=overlap)

    assert_fits(chunks, max_tokens)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    remaining = iter(chunks)
    for section in sections(doc):
        end = 0
        for count, piece in enumerate(remaining):
            assert piece.page == section.page
            if count_tokens(" › ".join(section.heading_path)) <= SPECIAL + max_tokens // 4:
                assert piece.heading_path == section.heading_path
            match = re.compile(r"(?<!\S)" + re.escape(piece.text) + r"(?!\S)").search(section.text)
            assert match is not None, "a chunk is a piece of its section's text"
            assert section.text[end : match.start()].strip() == "", "no text is skipped"
            if count and overlap >= 16:  # every word weighs at most 16 tokens here
                assert match.start() < end, "consecutive chunks overlap"
                shared = section.text[match.start() : end]
                assert count_tokens(shared) - SPECIAL <= overlap
            assert match.end() > end, "each chunk moves on"
            end = match.end()
            if end == len(section.text):
                break
        assert end == len(section.text), "the section is covered to its end"
    assert next(remaining, None) is None


@settings(max_examples=80, deadline=None)
@given(
    st.text(min_size=1, max_size=3000),
    st.integers(30, 256),
    st.integers(0, 15),
    st.sampled_from([(), ("Guide",), ("Ünïcödé", "日本語")]),
)
def test_any_text_splits_into_ordered_spans_that_fit(
    text: str, limit: int, overlap: int, path: tuple[str, ...]
) -> None:
    def measure(body: str) -> int:
        return count_tokens(embedding_text(path, body))

    spans = split(
        text,
        measure=measure,
        limit=limit,
        weigh=lambda word: max(count_tokens(word) - SPECIAL, 0),
        overlap=overlap,
    )

    if not text.split():
        assert spans == []
        return
    assert spans[0].start == len(text) - len(text.lstrip())
    assert spans[-1].end == len(text.rstrip())
    for span in spans:
        assert span.start < span.end
        assert span.tokens == measure(text[span.start : span.end]) <= limit
    for before, after in itertools.pairwise(spans):
        assert before.start < after.start and before.end < after.end
        assert text[before.end : after.start].strip() == ""


@settings(max_examples=80, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab .\n"), min_size=1, max_size=2000),
    st.integers(8, 120),
    st.integers(0, 4),
)
def test_spans_fit_even_when_word_counts_underestimate_the_whole(
    text: str, limit: int, overlap: int
) -> None:
    # Characters, spaces included, against words weighed at half their length:
    # every estimate falls short, so only the measurement keeps spans in bounds.
    spans = split(
        text, measure=len, limit=limit, weigh=lambda word: len(word) // 2, overlap=overlap
    )

    assert "".join(text[s.start : s.end] for s in spans).split() or not text.split()
    for span in spans:
        assert 0 < span.end - span.start == span.tokens <= limit
    covered = set()
    for span in spans:
        covered.update(range(span.start, span.end))
    assert all(i in covered for i, char in enumerate(text) if not char.isspace())
    for before, after in itertools.pairwise(spans):
        assert before.start < after.start
