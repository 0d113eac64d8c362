"""Tests of the LangGraph adapter."""
