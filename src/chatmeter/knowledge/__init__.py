"""Training files turned into passages: extraction, chunking and embeddings.

    extract.extract(data, filename=, max_bytes=)   bytes -> Document, or ExtractionError
    chunking.chunk(document, count_tokens=)        Document -> [Chunk], each fits the model
    embeddings.MiniLMEmbedder().embed(texts)       [str] -> float32 (n, 384), L2-normalised

Pure library code: no database, no web. The training job stores the result.
"""
