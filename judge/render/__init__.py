"""Rendering of results: Markdown and LaTeX tables, figures."""
