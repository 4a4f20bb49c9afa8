"""Data: CoNLL files, spans, tokenisation, images, detector output, the synthetic set, the data module."""
