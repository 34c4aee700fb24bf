"""Renderers: each turns one AnalysisResult into text; none computes anything."""
