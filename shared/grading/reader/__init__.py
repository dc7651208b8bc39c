"""The offline reader: read each answer with the local OCR engine and mark it against the answer key."""
