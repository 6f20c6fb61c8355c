"""Ingestion: walking folders, reading documents, chunking texts, and keeping a store in step."""
