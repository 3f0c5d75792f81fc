"""Rendering of results: Markdown and LaTeX tables and figures (tables.py), and the agreement and disparity reports
drawn from judge.analysis' typed results (agreement.py, disparity.py). Never imports a command."""
