"""Test helpers shared by unit, integration and functional tests."""
