"""The JSON API under /api/v1: bearer tokens, pydantic schemas, a generated OpenAPI document."""
